"""``jparam.optim``: torch.optim's optimizers on optax (``from jparam import optim``)."""
from jparam.optim.optimizer import Optimizer, ParamGroup, required  # noqa: F401
from jparam.optim.sgd import SGD  # noqa: F401
from jparam.optim.adam import Adam, AdamW, Adamax, NAdam, RAdam  # noqa: F401
from jparam.optim.rmsprop import RMSprop  # noqa: F401
from jparam.optim.adagrad import Adagrad  # noqa: F401
from jparam.optim.adadelta import Adadelta  # noqa: F401
from jparam.optim import lr_scheduler, transforms  # noqa: F401
