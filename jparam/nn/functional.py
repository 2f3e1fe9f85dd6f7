"""Pure functions on jax arrays with ``torch.nn.functional``'s names, signatures and defaults.

Import it like torch's: ``import jparam.nn.functional as F``. Layouts are torch's
(channels-first inputs, ``(out, in, *kernel)`` weights), so no transposes are needed.

Differences forced by JAX (arrays are immutable, randomness is explicit):

* ``batch_norm`` / ``instance_norm`` return ``(out, new_running_mean, new_running_var)``
  when torch would update the running stats in place (training with stats given).
* dropout functions take a keyword-only ``key`` (a ``jax.random`` key) when they drop;
  ``scaled_dot_product_attention`` / ``multi_head_attention_forward`` take ``key_rng``.
* ``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru`` and the ``*_cell`` functions are torch's
  ``_VF`` recurrent kernels (torch has them outside ``torch.nn.functional``).
* ``inplace=`` arguments are accepted and ignored.

Example:
    >>> import jax.numpy as jnp
    >>> import jparam.nn.functional as F
    >>> F.relu(jnp.array([-1.0, 1.0]))
    Array([0., 1.], dtype=float32)
"""
from __future__ import annotations

from ._functional._activation import *  # noqa: F401,F403
from ._functional._activation import __all__ as _a
from ._functional._attention import *  # noqa: F401,F403
from ._functional._attention import __all__ as _t
from ._functional._conv import *  # noqa: F401,F403
from ._functional._conv import __all__ as _c
from ._functional._dropout import *  # noqa: F401,F403
from ._functional._dropout import __all__ as _d
from ._functional._linear import *  # noqa: F401,F403
from ._functional._linear import __all__ as _li
from ._functional._loss import *  # noqa: F401,F403
from ._functional._loss import __all__ as _l
from ._functional._misc import *  # noqa: F401,F403
from ._functional._misc import __all__ as _m
from ._functional._norm import *  # noqa: F401,F403
from ._functional._norm import __all__ as _n
from ._functional._pool import *  # noqa: F401,F403
from ._functional._pool import __all__ as _p
from ._functional._resample import *  # noqa: F401,F403
from ._functional._resample import __all__ as _r
from ._functional._rnn import *  # noqa: F401,F403
from ._functional._rnn import __all__ as _rn

__all__ = [*_a, *_t, *_c, *_d, *_li, *_l, *_m, *_n, *_p, *_r, *_rn]
del _a, _t, _c, _d, _li, _l, _m, _n, _p, _r, _rn
