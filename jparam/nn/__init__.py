"""``jparam.nn``: modules, parameters, layers (``import jparam.nn as nn``)."""
from jparam.nn.modules import *  # noqa: F401,F403
from jparam.nn.modules import Buffer, Module, Parameter  # noqa: F401
from jparam.nn import utils  # noqa: F401

try:  # the functional and init namespaces (written alongside the layer library)
    from jparam.nn import functional, init  # noqa: F401
except ImportError:  # pragma: no cover - during development
    pass
