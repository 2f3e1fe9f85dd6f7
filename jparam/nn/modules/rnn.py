"""Recurrent layers: RNN, LSTM, GRU and their cells (torch names, layouts, init, repr)."""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import Parameter, _unwrap
from jparam._random import module_key, new_key_leaf
from jparam.nn import functional as F
from jparam.nn import init

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]


def _reset_uniform(module: Module) -> None:
    """torch's recurrent init: every parameter ``~ U(±1/sqrt(hidden_size))``."""
    stdv = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0.0
    for weight in module.parameters():
        init.uniform_(weight, -stdv, stdv)


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


class RNNBase(Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU` (torch's ``RNNBase``).

    Parameters per layer ``k`` and direction (suffix ``""`` or ``"_reverse"``):
    ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` and, for LSTM with
    ``proj_size > 0``, ``weight_hr_l{k}``; all ``~ U(±1/sqrt(hidden_size))``. The time loop is a
    ``jax.lax.scan``; inter-layer dropout draws from the module's own key in training mode.

    Example:
        >>> lstm = nn.LSTM(4, 8, num_layers=2, batch_first=True)
        >>> out, (h, c) = lstm(jnp.ones((3, 5, 4)))
        >>> out.shape, h.shape
        ((3, 5, 8), (2, 3, 8))
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode!r}; expected one of {sorted(_GATES)}")
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=2)
        if not isinstance(hidden_size, int) or isinstance(hidden_size, bool):
            raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"num_layers must be an int greater than zero, got {num_layers!r}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        D = 2 if bidirectional else 1
        gate = _GATES[mode] * hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size
        names = []
        for layer in range(num_layers):
            for d in range(D):
                layer_in = input_size if layer == 0 else real_hidden * D
                sfx = "_reverse" if d == 1 else ""
                shapes = [(f"weight_ih_l{layer}{sfx}", (gate, layer_in)),
                          (f"weight_hh_l{layer}{sfx}", (gate, real_hidden))]
                if bias:
                    shapes += [(f"bias_ih_l{layer}{sfx}", (gate,)),
                               (f"bias_hh_l{layer}{sfx}", (gate,))]
                if proj_size > 0:
                    shapes.append((f"weight_hr_l{layer}{sfx}", (proj_size, hidden_size)))
                for name, shape in shapes:
                    setattr(self, name, Parameter(init._empty(shape, dtype)))
                    names.append(name)
        self._flat_weights_names = tuple(names)
        self._rng = new_key_leaf()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw every weight and bias from ``U(±1/sqrt(hidden_size))`` (torch's init)."""
        _reset_uniform(self)

    @property
    def _flat_weights(self):
        return [_unwrap(getattr(self, n)) for n in self._flat_weights_names]

    @property
    def all_weights(self):
        """Per layer/direction lists of parameters, like torch's ``all_weights``."""
        D = 2 if self.bidirectional else 1
        per = len(self._flat_weights_names) // (self.num_layers * D)
        return [[getattr(self, n) for n in self._flat_weights_names[i:i + per]]
                for i in range(0, len(self._flat_weights_names), per)]

    def flatten_parameters(self) -> None:
        """No-op (cuDNN weight packing has no JAX counterpart), kept for ported code."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    def _check_input(self, input):
        input = _unwrap(input)
        if jnp.ndim(input) not in (2, 3):
            raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got "
                             f"{jnp.ndim(input)}D instead (shape {jnp.shape(input)})")
        if jnp.shape(input)[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input.size(-1) must be equal to input_size. "
                             f"Expected {self.input_size}, got {jnp.shape(input)[-1]}")
        return input

    def _check_hx(self, input, hx, name="hx"):
        if hx is None:
            return None
        hx = _unwrap(hx)
        want = jnp.ndim(input)
        if jnp.ndim(hx) != want:
            kind = "unbatched 2-D" if want == 2 else "batched 3-D"
            raise ValueError(f"{type(self).__name__}: for {kind} input, {name} should also be "
                             f"{want}-D but got {jnp.ndim(hx)}-D (shape {jnp.shape(hx)})")
        return hx

    def _dropout_key(self):
        if self.training and self.dropout > 0.0 and self.num_layers > 1:
            return module_key(self)
        return None

    def forward(self, input: jax.Array, hx: Optional[jax.Array] = None):
        input = self._check_input(input)
        hx = self._check_hx(input, hx)
        fn = F.rnn_tanh if self.mode == "RNN_TANH" else F.rnn_relu if self.mode == "RNN_RELU" else F.gru
        return fn(input, hx, self._flat_weights, self.bias, self.num_layers, self.dropout,
                  self.training, self.bidirectional, self.batch_first, key=self._dropout_key())


class RNN(RNNBase):
    r"""Elman RNN, ``h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)`` (or ReLU).

    ``forward(input, hx=None) -> (output, h_n)``; ``input (T, N, H_in)`` (``(N, T, H_in)`` with
    ``batch_first``) or unbatched ``(T, H_in)``; ``hx (num_layers·D, N, H)``.

    Example:
        >>> rnn = nn.RNN(4, 8, num_layers=2, bidirectional=True)
        >>> out, h = rnn(jnp.ones((5, 3, 4)))
        >>> out.shape, h.shape
        ((5, 3, 16), (4, 3, 8))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)
        self.nonlinearity = nonlinearity


class GRU(RNNBase):
    r"""GRU with torch's gates ``r, z, n``; ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``.

    Example:
        >>> gru = nn.GRU(4, 8, batch_first=True)
        >>> out, h = gru(jnp.ones((3, 5, 4)))
        >>> out.shape, h.shape
        ((3, 5, 8), (1, 3, 8))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)


class LSTM(RNNBase):
    r"""LSTM with torch's gates ``i, f, g, o``; ``proj_size > 0`` projects ``h`` by ``weight_hr``.

    ``forward(input, hx=None) -> (output, (h_n, c_n))``; ``hx = (h_0, c_0)``.

    Example:
        >>> lstm = nn.LSTM(4, 8, proj_size=3)
        >>> out, (h, c) = lstm(jnp.ones((5, 2, 4)))
        >>> out.shape, h.shape, c.shape
        ((5, 2, 3), (1, 2, 3), (1, 2, 8))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device: Any = None, dtype: Any = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype)

    def forward(self, input: jax.Array, hx: Optional[Tuple[jax.Array, jax.Array]] = None):
        input = self._check_input(input)
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"LSTM: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            hx = (self._check_hx(input, hx[0], "h_0"), self._check_hx(input, hx[1], "c_0"))
        out, h, c = F.lstm(input, hx, self._flat_weights, self.bias, self.num_layers,
                            self.dropout, self.training, self.bidirectional, self.batch_first,
                            key=self._dropout_key())
        return out, (h, c)


class RNNCellBase(Module):
    """Shared parts of the cells: ``weight_ih (G·H, in)``, ``weight_hh (G·H, H)``,
    ``bias_ih``, ``bias_hh``, all ``~ U(±1/sqrt(hidden_size))``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(init._empty((num_chunks * hidden_size, input_size), dtype))
        self.weight_hh = Parameter(init._empty((num_chunks * hidden_size, hidden_size), dtype))
        if bias:
            self.bias_ih = Parameter(init._empty((num_chunks * hidden_size,), dtype))
            self.bias_hh = Parameter(init._empty((num_chunks * hidden_size,), dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw every weight and bias from ``U(±1/sqrt(hidden_size))`` (torch's init)."""
        _reset_uniform(self)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _prep(self, input, hx, n_state):
        input = _unwrap(input)
        if jnp.ndim(input) not in (1, 2):
            raise ValueError(f"{type(self).__name__}: Expected input to be 1D or 2D, got "
                             f"{jnp.ndim(input)}D instead (shape {jnp.shape(input)})")
        if jnp.shape(input)[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has inconsistent input_size: got "
                             f"{jnp.shape(input)[-1]} expected {self.input_size}")
        batched = jnp.ndim(input) == 2
        if not batched:
            input = input[None]
        N = input.shape[0]
        if hx is None:
            hx = tuple(jnp.zeros((N, self.hidden_size), input.dtype) for _ in range(n_state))
        else:
            hx = tuple(_unwrap(h) for h in (hx if n_state == 2 else (hx,)))
            for h in hx:
                if jnp.ndim(h) != jnp.ndim(input) - (0 if batched else 1):
                    raise ValueError(f"{type(self).__name__}: hidden state must be "
                                     f"{2 if batched else 1}-D for {2 if batched else 1}-D input, "
                                     f"got shape {jnp.shape(h)}")
            if not batched:
                hx = tuple(h[None] for h in hx)
        return input, hx, batched

    def _params(self):
        return (_unwrap(self.weight_ih), _unwrap(self.weight_hh), _unwrap(self.bias_ih), _unwrap(self.bias_hh))


class RNNCell(RNNCellBase):
    """One Elman step: ``h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`` (or ReLU).

    Example:
        >>> cell = nn.RNNCell(4, 8)
        >>> cell(jnp.ones((3, 4))).shape
        (3, 8)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity

    def forward(self, input: jax.Array, hx: Optional[jax.Array] = None) -> jax.Array:
        x, (h,), batched = self._prep(input, hx, 1)
        fn = F.rnn_tanh_cell if self.nonlinearity == "tanh" else F.rnn_relu_cell
        out = fn(x, h, *self._params())
        return out if batched else out[0]


class LSTMCell(RNNCellBase):
    """One LSTM step (gates ``i, f, g, o``); ``forward(input, (h, c)) -> (h', c')``.

    Example:
        >>> cell = nn.LSTMCell(4, 8)
        >>> h, c = cell(jnp.ones((3, 4)))
        >>> h.shape, c.shape
        ((3, 8), (3, 8))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: jax.Array, hx: Optional[Tuple[jax.Array, jax.Array]] = None):
        x, (h, c), batched = self._prep(input, hx, 2)
        h, c = F.lstm_cell(x, (h, c), *self._params())
        return (h, c) if batched else (h[0], c[0])


class GRUCell(RNNCellBase):
    """One GRU step (gates ``r, z, n``).

    Example:
        >>> cell = nn.GRUCell(4, 8)
        >>> cell(jnp.ones(4)).shape
        (8,)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: jax.Array, hx: Optional[jax.Array] = None) -> jax.Array:
        x, (h,), batched = self._prep(input, hx, 1)
        out = F.gru_cell(x, h, *self._params())
        return out if batched else out[0]
