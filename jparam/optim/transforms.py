"""torch.optim's update rules as optax ``GradientTransformation`` s, step for step equal to torch.

Each factory returns a :class:`TorchTransform`: an optax transformation (``init(params)``,
``update(grads, state, params) -> (updates, state)``, updates ADDED to the parameters; any
pytree of parameters) with ``to_torch_state`` / ``from_torch_state`` for one parameter's
torch state. Every numeric argument, ``lr`` included, may be a Python float or a traced jax
scalar; structural options are keyword arguments. The rules live next to their torch-API
class, one file per family (``jparam/optim/sgd.py``, ``adam.py``, ...).

Example:
    >>> import optax
    >>> from jparam.optim.transforms import adam
    >>> params = {"w": jnp.ones(3)}
    >>> tx = adam(1e-3, betas=(0.9, 0.999), weight_decay=0.1)
    >>> updates, state = tx.update({"w": jnp.full(3, 0.5)}, tx.init(params), params)
    >>> params = optax.apply_updates(params, updates)
    >>> params["w"]  # L2 decay: g = 0.5 + 0.1 * 1; Adam's first step moves by lr * sign(g)
    Array([0.999, 0.999, 0.999], dtype=float32)
"""
from jparam.optim._transform import TorchTransform
from jparam.optim.adadelta import AdadeltaState, adadelta
from jparam.optim.adagrad import AdagradState, adagrad
from jparam.optim.adam import AdamaxState, AdamState, NAdamState, RAdamState, adam, adamax, adamw, nadam, radam
from jparam.optim.rmsprop import RMSpropState, rmsprop
from jparam.optim.sgd import SGDState, sgd

__all__ = [
    "TorchTransform", "sgd", "adam", "adamw", "adamax", "nadam", "radam", "rmsprop", "adagrad", "adadelta",
    "SGDState", "AdamState", "AdamaxState", "NAdamState", "RAdamState", "RMSpropState", "AdagradState",
    "AdadeltaState",
]
