"""Layer modules, one file per family (as in ``torch/nn/modules``)."""
# ruff: noqa: F401  (re-exports)
from jparam._module import Module
from jparam._parameter import Buffer, Parameter
from jparam.nn.modules.activation import (CELU, ELU, GELU, GLU, SELU, Hardshrink, Hardsigmoid,
                                          Hardswish, Hardtanh, LeakyReLU, LogSigmoid, LogSoftmax,
                                          Mish, PReLU, ReLU, ReLU6, RReLU, Sigmoid, SiLU, Softmax,
                                          Softmax2d, Softmin, Softplus, Softshrink, Softsign, Tanh,
                                          Tanhshrink, Threshold)
from jparam.nn.modules.batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d
from jparam.nn.modules.container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from jparam.nn.modules.conv import (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d,
                                    ConvTranspose3d)
from jparam.nn.modules.distance import CosineSimilarity, PairwiseDistance
from jparam.nn.modules.dropout import (AlphaDropout, Dropout, Dropout1d, Dropout2d, Dropout3d,
                                       FeatureAlphaDropout)
from jparam.nn.modules.flatten import Flatten, Unflatten
from jparam.nn.modules.linear import Bilinear, Identity, Linear
from jparam.nn.modules.loss import (BCELoss, BCEWithLogitsLoss, CosineEmbeddingLoss,
                                    CrossEntropyLoss, GaussianNLLLoss, HingeEmbeddingLoss,
                                    HuberLoss, KLDivLoss, L1Loss, MarginRankingLoss, MSELoss,
                                    MultiLabelSoftMarginLoss, MultiMarginLoss, NLLLoss,
                                    PoissonNLLLoss, SmoothL1Loss, SoftMarginLoss,
                                    TripletMarginLoss)
from jparam.nn.modules.normalization import (GroupNorm, InstanceNorm1d, InstanceNorm2d,
                                             InstanceNorm3d, LayerNorm, LocalResponseNorm, RMSNorm)
from jparam.nn.modules.padding import (CircularPad1d, CircularPad2d, CircularPad3d, ConstantPad1d,
                                       ConstantPad2d, ConstantPad3d, ReflectionPad1d,
                                       ReflectionPad2d, ReflectionPad3d, ReplicationPad1d,
                                       ReplicationPad2d, ReplicationPad3d, ZeroPad1d, ZeroPad2d,
                                       ZeroPad3d)
from jparam.nn.modules.pixelshuffle import PixelShuffle, PixelUnshuffle
from jparam.nn.modules.pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d,
                                       AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d,
                                       AvgPool1d, AvgPool2d, AvgPool3d, LPPool1d, LPPool2d,
                                       LPPool3d, MaxPool1d, MaxPool2d, MaxPool3d)
from jparam.nn.modules.sparse import Embedding
from jparam.nn.modules.upsampling import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d
from jparam.nn.modules.activation_attention import MultiheadAttention, NonDynamicallyQuantizableLinear
from jparam.nn.modules.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from jparam.nn.modules.transformer import (Transformer, TransformerDecoder, TransformerDecoderLayer,
                                           TransformerEncoder, TransformerEncoderLayer)
from jparam.nn.modules.stacked import StackedBlocks  # noqa: F401
