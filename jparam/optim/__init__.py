"""``jparam.optim``: torch.optim's optimizers on optax (``from jparam import optim``)."""
from jparam.optim.optimizer import Optimizer, ParamGroup, required  # noqa: F401
from jparam.optim.sgd import SGD  # noqa: F401
