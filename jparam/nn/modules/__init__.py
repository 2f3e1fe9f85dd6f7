"""Layer modules, one file per family (as in ``torch/nn/modules``)."""
from jparam._module import Module
from jparam._parameter import Buffer, Parameter
from jparam.nn.modules.batchnorm import BatchNorm1d
from jparam.nn.modules.container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from jparam.nn.modules.dropout import Dropout
from jparam.nn.modules.linear import Identity, Linear
from jparam.nn.modules.activation_attention import MultiheadAttention, NonDynamicallyQuantizableLinear
from jparam.nn.modules.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
