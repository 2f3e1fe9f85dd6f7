"""Recurrent cells and a multi-layer, bidirectional sequence runner (``jax.lax.scan``) with
torch's weight layouts and gate orders.

Weights are torch's: ``w_ih (G·H, in)``, ``w_hh (G·H, H_out)``, ``b_ih (G·H,)``, ``b_hh (G·H,)``
and, for LSTM with ``proj_size > 0``, ``w_hr (proj_size, H)``; ``G`` = 1 (RNN), 4 (LSTM gates
``i, f, g, o``) or 3 (GRU gates ``r, z, n``). The flat weight list given to :func:`rnn_tanh`,
:func:`rnn_relu`, :func:`lstm` and :func:`gru` is torch's ``_flat_weights`` order: for each layer,
for each direction (forward, then ``_reverse``): ``w_ih, w_hh, [b_ih, b_hh], [w_hr]``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jparam.amp import _autocast as _amp

__all__ = ["rnn_tanh_cell", "rnn_relu_cell", "lstm_cell", "gru_cell",
           "rnn_tanh", "rnn_relu", "lstm", "gru"]

Array = jax.Array


def _lin(x, w, b):
    y = jnp.matmul(x, w.T)
    return y if b is None else y + b


# ------------------------------------------------------------------------------ cell steps
# ``gi`` is the already-projected input ``x W_ihᵀ + b_ih`` (hoisted out of the time loop).

def _rnn_step(gi, h, w_hh, b_hh, act):
    return act(gi + _lin(h, w_hh, b_hh))


def _lstm_step(gi, h, c, w_hh, b_hh, w_hr):
    gates = gi + _lin(h, w_hh, b_hh)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    if w_hr is not None:
        h = jnp.matmul(h, w_hr.T)
    return h, c


def _gru_step(gi, h, w_hh, b_hh):
    gh = _lin(h, w_hh, b_hh)
    i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(i_r + h_r)
    z = jax.nn.sigmoid(i_z + h_z)
    n = jnp.tanh(i_n + r * h_n)
    return (1.0 - z) * n + z * h


def rnn_tanh_cell(input: Array, hx: Array, w_ih: Array, w_hh: Array,
                  b_ih: Optional[Array] = None, b_hh: Optional[Array] = None) -> Array:
    """One Elman step ``h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`` (torch's ``rnn_tanh_cell``).

    Example:
        >>> rnn_tanh_cell(jnp.ones((2, 3)), jnp.zeros((2, 4)), jnp.ones((4, 3)), jnp.ones((4, 4))).shape
        (2, 4)
    """
    input, hx, w_ih, w_hh, b_ih, b_hh = _amp.cast_for_matmul(input, hx, w_ih, w_hh, b_ih, b_hh)
    return _rnn_step(_lin(input, w_ih, b_ih), hx, w_hh, b_hh, jnp.tanh)


def rnn_relu_cell(input: Array, hx: Array, w_ih: Array, w_hh: Array,
                  b_ih: Optional[Array] = None, b_hh: Optional[Array] = None) -> Array:
    """One Elman step with ReLU (torch's ``rnn_relu_cell``).

    Example:
        >>> rnn_relu_cell(jnp.ones(3), jnp.zeros(4), jnp.ones((4, 3)), jnp.ones((4, 4))).shape
        (4,)
    """
    input, hx, w_ih, w_hh, b_ih, b_hh = _amp.cast_for_matmul(input, hx, w_ih, w_hh, b_ih, b_hh)
    return _rnn_step(_lin(input, w_ih, b_ih), hx, w_hh, b_hh, jax.nn.relu)


def lstm_cell(input: Array, hx: Tuple[Array, Array], w_ih: Array, w_hh: Array,
              b_ih: Optional[Array] = None, b_hh: Optional[Array] = None,
              w_hr: Optional[Array] = None) -> Tuple[Array, Array]:
    """One LSTM step, gates ``i, f, g, o`` (torch's order); returns ``(h', c')``. With ``w_hr``
    (``(proj_size, H)``) ``h'`` is projected, as in ``nn.LSTM(proj_size=...)``.

    Example:
        >>> h, c = lstm_cell(jnp.ones((2, 3)), (jnp.zeros((2, 4)), jnp.zeros((2, 4))),
        ...                  jnp.ones((16, 3)), jnp.ones((16, 4)))
        >>> h.shape, c.shape
        ((2, 4), (2, 4))
    """
    input, w_ih, w_hh, b_ih, b_hh, w_hr = _amp.cast_for_matmul(input, w_ih, w_hh, b_ih, b_hh, w_hr)
    hx = _amp.cast_for_matmul(*hx)
    h, c = hx
    return _lstm_step(_lin(input, w_ih, b_ih), h, c, w_hh, b_hh, w_hr)


def gru_cell(input: Array, hx: Array, w_ih: Array, w_hh: Array,
             b_ih: Optional[Array] = None, b_hh: Optional[Array] = None) -> Array:
    """One GRU step, gates ``r, z, n``; ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``,
    ``h' = (1 − z) ⊙ n + z ⊙ h`` (torch's ``gru_cell``).

    Example:
        >>> gru_cell(jnp.ones((2, 3)), jnp.zeros((2, 4)), jnp.ones((12, 3)), jnp.ones((12, 4))).shape
        (2, 4)
    """
    input, hx, w_ih, w_hh, b_ih, b_hh = _amp.cast_for_matmul(input, hx, w_ih, w_hh, b_ih, b_hh)
    return _gru_step(_lin(input, w_ih, b_ih), hx, w_hh, b_hh)


# ------------------------------------------------------------------------------ sequence runner

def _as_key(key):
    if key is None:
        raise ValueError("recurrent dropout (dropout > 0, training) needs an explicit `key` "
                         "(e.g. jax.random.key(0)); the nn.RNN/LSTM/GRU modules supply one themselves")
    if isinstance(key, (np.ndarray, jax.Array)) and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
    return key


def _run_direction(mode, x, h0, c0, w, has_biases, reverse):
    """Scan one layer in one direction over time-major ``x (T, N, in)``."""
    w_ih, w_hh = w[0], w[1]
    b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
    w_hr = w[-1] if mode == "LSTM" and len(w) in (3, 5) else None
    gi = _lin(x, w_ih, b_ih)   # all time steps at once, outside the loop

    if mode == "LSTM":
        def step(carry, g):
            h, c = _lstm_step(g, carry[0], carry[1], w_hh, b_hh, w_hr)
            return (h, c), h
        (h, c), ys = jax.lax.scan(step, (h0, c0), gi, reverse=reverse)
        return ys, h, c
    if mode == "GRU":
        def step(h, g):
            h = _gru_step(g, h, w_hh, b_hh)
            return h, h
    else:
        act = jnp.tanh if mode == "RNN_TANH" else jax.nn.relu

        def step(h, g):
            h = _rnn_step(g, h, w_hh, b_hh, act)
            return h, h
    h, ys = jax.lax.scan(step, h0, gi, reverse=reverse)
    return ys, h, None


def _rnn_impl(mode, input, hx, flat_weights, has_biases, num_layers, dropout, train,
              bidirectional, batch_first, key):
    fname = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "LSTM": "lstm", "GRU": "gru"}[mode]
    input, flat_weights = _amp.cast_for_matmul(input), [_amp.cast_for_matmul(w) for w in flat_weights]
    hx = _amp.cast_for_matmul(*hx) if isinstance(hx, (tuple, list)) else _amp.cast_for_matmul(hx)
    input = jnp.asarray(input)
    if not jnp.issubdtype(input.dtype, jnp.floating):
        raise TypeError(f"{fname}: input must be a floating-point array, got {input.dtype}")
    if input.ndim not in (2, 3):
        raise ValueError(f"{fname}: expected input to be 2-D (unbatched) or 3-D, got shape {input.shape}")
    D = 2 if bidirectional else 1
    per = 2 + (2 if has_biases else 0)
    flat_weights = list(flat_weights)
    if mode == "LSTM" and len(flat_weights) == num_layers * D * (per + 1):
        per += 1
    if len(flat_weights) != num_layers * D * per:
        raise ValueError(f"{fname}: expected {num_layers * D * per} weights for num_layers={num_layers}, "
                         f"bidirectional={bidirectional}, bias={has_biases}; got {len(flat_weights)}")
    unbatched = input.ndim == 2
    x = input[:, None] if unbatched else (jnp.swapaxes(input, 0, 1) if batch_first else input)
    T, N = x.shape[0], x.shape[1]
    H_out = flat_weights[1].shape[1]
    gate_rows = flat_weights[0].shape[0]
    H = gate_rows // {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}[mode]

    if mode == "LSTM":
        if hx is None:
            h0 = jnp.zeros((num_layers * D, N, H_out), x.dtype)
            c0 = jnp.zeros((num_layers * D, N, H), x.dtype)
        else:
            h0, c0 = (jnp.asarray(t) for t in hx)
            if unbatched:
                h0, c0 = h0[:, None], c0[:, None]
            if h0.shape != (num_layers * D, N, H_out) or c0.shape != (num_layers * D, N, H):
                raise ValueError(f"{fname}: expected hx shapes {(num_layers * D, N, H_out)} and "
                                 f"{(num_layers * D, N, H)}, got {h0.shape} and {c0.shape}")
    else:
        h0 = jnp.zeros((num_layers * D, N, H_out), x.dtype) if hx is None else jnp.asarray(hx)
        if hx is not None and unbatched:
            h0 = h0[:, None]
        if h0.shape != (num_layers * D, N, H_out):
            raise ValueError(f"{fname}: expected hidden size {(num_layers * D, N, H_out)}, got {h0.shape}")
        c0 = None
    if x.shape[-1] != flat_weights[0].shape[1]:
        raise ValueError(f"{fname}: input.size(-1) must be equal to input_size. Expected "
                         f"{flat_weights[0].shape[1]}, got {x.shape[-1]}")

    use_dropout = train and dropout > 0.0 and num_layers > 1
    if use_dropout:
        keys = jax.random.split(_as_key(key), num_layers - 1)
    h_n, c_n = [], []
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            idx = layer * D + d
            w = flat_weights[idx * per:(idx + 1) * per]
            ys, h, c = _run_direction(mode, x, h0[idx], None if c0 is None else c0[idx], w,
                                      has_biases, reverse=(d == 1))
            outs.append(ys)
            h_n.append(h)
            c_n.append(c)
        x = outs[0] if D == 1 else jnp.concatenate(outs, axis=-1)
        if use_dropout and layer < num_layers - 1:
            if dropout >= 1.0:
                x = jnp.zeros_like(x)
            else:
                keep = jax.random.bernoulli(keys[layer], 1.0 - dropout, x.shape)
                x = jnp.where(keep, x / (1.0 - dropout), jnp.zeros((), x.dtype))
    out = x[:, 0] if unbatched else (jnp.swapaxes(x, 0, 1) if batch_first else x)
    h_n = jnp.stack(h_n)
    if unbatched:
        h_n = h_n[:, 0]
    if mode == "LSTM":
        c_n = jnp.stack(c_n)
        if unbatched:
            c_n = c_n[:, 0]
        return out, h_n, c_n
    return out, h_n


def rnn_tanh(input: Array, hx: Optional[Array], flat_weights: Sequence[Array], has_biases: bool,
             num_layers: int, dropout: float, train: bool, bidirectional: bool,
             batch_first: bool, *, key=None) -> Tuple[Array, Array]:
    """Multi-layer Elman RNN (tanh) over a sequence, torch's ``_VF.rnn_tanh`` argument order.

    ``input (T, N, in)`` (``(N, T, in)`` if ``batch_first``, ``(T, in)`` unbatched); ``hx
    (num_layers·D, N, H)`` or None. Returns ``(output (T, N, D·H), h_n)``. Dropout between layers
    (``train`` and ``dropout > 0``) needs ``key``.

    Example:
        >>> w = [jnp.ones((4, 3)), jnp.ones((4, 4))]
        >>> out, h = rnn_tanh(jnp.ones((5, 2, 3)), None, w, False, 1, 0.0, False, False, False)
        >>> out.shape, h.shape
        ((5, 2, 4), (1, 2, 4))
    """
    return _rnn_impl("RNN_TANH", input, hx, flat_weights, has_biases, num_layers, dropout, train,
                     bidirectional, batch_first, key)


def rnn_relu(input: Array, hx: Optional[Array], flat_weights: Sequence[Array], has_biases: bool,
             num_layers: int, dropout: float, train: bool, bidirectional: bool,
             batch_first: bool, *, key=None) -> Tuple[Array, Array]:
    """Like :func:`rnn_tanh` with ReLU.

    Example:
        >>> w = [jnp.ones((4, 3)), jnp.ones((4, 4))]
        >>> rnn_relu(jnp.ones((5, 3)), None, w, False, 1, 0.0, False, False, False)[0].shape
        (5, 4)
    """
    return _rnn_impl("RNN_RELU", input, hx, flat_weights, has_biases, num_layers, dropout, train,
                     bidirectional, batch_first, key)


def lstm(input: Array, hx: Optional[Tuple[Array, Array]], flat_weights: Sequence[Array],
         has_biases: bool, num_layers: int, dropout: float, train: bool, bidirectional: bool,
         batch_first: bool, *, key=None) -> Tuple[Array, Array, Array]:
    """Multi-layer LSTM (torch's ``_VF.lstm`` argument order); returns ``(output, h_n, c_n)``.
    Per layer/direction weights ``w_ih, w_hh, [b_ih, b_hh], [w_hr]`` (``w_hr`` when projecting).

    Example:
        >>> w = [jnp.ones((16, 3)), jnp.ones((16, 4))]
        >>> out, h, c = lstm(jnp.ones((5, 2, 3)), None, w, False, 1, 0.0, False, False, False)
        >>> out.shape, h.shape, c.shape
        ((5, 2, 4), (1, 2, 4), (1, 2, 4))
    """
    return _rnn_impl("LSTM", input, hx, flat_weights, has_biases, num_layers, dropout, train,
                     bidirectional, batch_first, key)


def gru(input: Array, hx: Optional[Array], flat_weights: Sequence[Array], has_biases: bool,
        num_layers: int, dropout: float, train: bool, bidirectional: bool,
        batch_first: bool, *, key=None) -> Tuple[Array, Array]:
    """Multi-layer GRU (torch's ``_VF.gru`` argument order); returns ``(output, h_n)``.

    Example:
        >>> w = [jnp.ones((12, 3)), jnp.ones((12, 4))]
        >>> gru(jnp.ones((5, 2, 3)), None, w, False, 1, 0.0, False, False, False)[1].shape
        (1, 2, 4)
    """
    return _rnn_impl("GRU", input, hx, flat_weights, has_biases, num_layers, dropout, train,
                     bidirectional, batch_first, key)
