"""jparam: PyTorch's ``nn.Module`` / ``nn.Parameter`` programming model for JAX, functionally.

Example:
    >>> import jax, jax.numpy as jnp, jparam
    >>> from jparam import nn, optim
    >>> jparam.manual_seed(0)
    >>> model = nn.Linear(3, 1)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> loss, model = jparam.backward(lambda m, x: jnp.mean(m(x) ** 2), model, jnp.ones((4, 3)))
    >>> model, opt = opt.step(model)
    >>> model.weight.grad is None     # step consumed the gradient it used
    True
"""
from jparam._autodiff import backward, call, grad, value_and_grad
from jparam._module import Module
from jparam._parameter import Buffer, Parameter
from jparam._random import get_rng_state, initial_seed, manual_seed, set_rng_state
from jparam._tracing import TracerLeakError
from jparam import _random as random
from jparam import amp, distributed, func, nn, optim, utils
from jparam.amp import autocast

__version__ = "0.1.0"

__all__ = [
    "Module", "Parameter", "Buffer", "backward", "value_and_grad", "grad", "call",
    "manual_seed", "initial_seed", "get_rng_state", "set_rng_state", "TracerLeakError",
    "nn", "optim", "random", "func", "amp", "autocast", "distributed", "utils",
]

# checkpoints (torch and safetensors are imported lazily, inside the functions)
from jparam._checkpoint import load, load_checkpoint, load_metadata, save, save_checkpoint  # noqa: E402

from jparam._summary import summary  # noqa: E402
from jparam._sharded import load_sharded, save_sharded  # noqa: E402  (orbax imported lazily)
from jparam._from_torch import from_torch  # noqa: E402  (torch imported lazily)
from jparam._export_module import ExportedModule  # noqa: E402  (never imports torch)

__all__ += ["load", "save", "load_metadata", "save_checkpoint", "load_checkpoint", "summary",
            "save_sharded", "load_sharded", "from_torch", "ExportedModule"]
