"""Transformer family: encoder/decoder layers, stacks and ``Transformer`` (torch's names,
submodule layout, init, repr and forward semantics)."""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import _unwrap
from jparam._random import new_key_leaf
from jparam.nn import init
from jparam.nn._functional._activation import gelu, relu
from jparam.nn.modules.activation_attention import MultiheadAttention
from jparam.nn.modules.container import ModuleList
from jparam.nn.modules.dropout import Dropout
from jparam.nn.modules.linear import Linear
from jparam.nn.modules.normalization import LayerNorm

__all__ = ["Transformer", "TransformerEncoder", "TransformerDecoder",
           "TransformerEncoderLayer", "TransformerDecoderLayer"]


def _layer_norm(d_model: int, eps: float, bias: bool, dtype: Any) -> Module:
    return LayerNorm(d_model, eps=eps, bias=bias, dtype=dtype)


def _get_activation_fn(activation: str) -> Callable:
    if activation == "relu":
        return relu
    if activation == "gelu":
        return gelu
    raise ValueError(f"activation should be relu/gelu, not {activation}")


def _reseed(module: Module) -> None:
    """Give every dropout-style key in a deep copy a fresh value (torch draws its masks from
    the global generator, so clones must not share masks)."""
    for m in module.modules():
        if isinstance(getattr(m, "_rng", None), jax.Array):
            m._rng = new_key_leaf()


def _get_clones(module: Module, N: int) -> ModuleList:
    clones = []
    for _ in range(N):
        c = copy.deepcopy(module)
        _reseed(c)
        clones.append(c)
    return ModuleList(clones)


def _canonical(mask, dtype):
    """bool → float (-inf where True), like ``F._canonical_mask``; float unchanged."""
    if mask is None:
        return None
    mask = _unwrap(mask)
    mask = jnp.asarray(mask)
    if mask.dtype == jnp.bool_:
        return jnp.where(mask, jnp.asarray(-jnp.inf, dtype), jnp.asarray(0.0, dtype))
    if not jnp.issubdtype(mask.dtype, jnp.floating):
        raise TypeError(f"only bool and floating types of masks are supported, got {mask.dtype}")
    return mask


def _generate_square_subsequent_mask(sz: int, device: Any = None, dtype: Any = None) -> jax.Array:
    dtype = jnp.float32 if dtype is None else dtype
    return jnp.triu(jnp.full((sz, sz), -jnp.inf, dtype=dtype), k=1)


class TransformerEncoderLayer(Module):
    r"""Self-attention + feed-forward block (``torch.nn.TransformerEncoderLayer``).

    Submodules ``self_attn``, ``linear1``, ``dropout``, ``linear2``, ``norm1``, ``norm2``,
    ``dropout1``, ``dropout2``; ``norm_first`` selects pre-norm. ``activation``: ``"relu"``,
    ``"gelu"`` or a callable (a ``Module`` becomes a child, as in torch).

    Example:
        >>> layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
        >>> layer(jnp.ones((2, 5, 16))).shape
        (2, 5, 16)
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: Union[str, Callable] = relu,
                 layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = _layer_norm(d_model, layer_norm_eps, bias, dtype)
        self.norm2 = _layer_norm(d_model, layer_norm_eps, bias, dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        if isinstance(activation, str):
            activation = _get_activation_fn(activation)
        if activation is relu or type(activation).__name__ == "ReLU":
            self.activation_relu_or_gelu = 1
        elif activation is gelu or type(activation).__name__ == "GELU":
            self.activation_relu_or_gelu = 2
        else:
            self.activation_relu_or_gelu = 0
        self.activation = activation

    def forward(self, src: jax.Array, src_mask: Optional[jax.Array] = None,
                src_key_padding_mask: Optional[jax.Array] = None,
                is_causal: bool = False) -> jax.Array:
        src = _unwrap(src)
        src_key_padding_mask = _canonical(src_key_padding_mask, src.dtype)
        src_mask = _canonical(src_mask, src.dtype)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal=False):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)


class TransformerDecoderLayer(Module):
    r"""Self-attention + cross-attention + feed-forward block (``torch.nn.TransformerDecoderLayer``).

    Submodules ``self_attn``, ``multihead_attn``, ``linear1``, ``dropout``, ``linear2``,
    ``norm1..3``, ``dropout1..3``.

    Example:
        >>> layer = nn.TransformerDecoderLayer(16, 4, dim_feedforward=32)
        >>> layer(jnp.ones((5, 2, 16)), jnp.ones((7, 2, 16))).shape
        (5, 2, 16)
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: Union[str, Callable] = relu,
                 layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout,
                                            batch_first=batch_first, bias=bias, dtype=dtype)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout,
                                                 batch_first=batch_first, bias=bias, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = _layer_norm(d_model, layer_norm_eps, bias, dtype)
        self.norm2 = _layer_norm(d_model, layer_norm_eps, bias, dtype)
        self.norm3 = _layer_norm(d_model, layer_norm_eps, bias, dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _get_activation_fn(activation) if isinstance(activation, str) else activation

    def forward(self, tgt: jax.Array, memory: jax.Array, tgt_mask: Optional[jax.Array] = None,
                memory_mask: Optional[jax.Array] = None,
                tgt_key_padding_mask: Optional[jax.Array] = None,
                memory_key_padding_mask: Optional[jax.Array] = None,
                tgt_is_causal: bool = False, memory_is_causal: bool = False) -> jax.Array:
        x = _unwrap(tgt)
        memory = _unwrap(memory)
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                                    memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask,
                                               memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal=False):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           is_causal=is_causal, need_weights=False)[0]
        return self.dropout1(x)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal=False):
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                is_causal=is_causal, need_weights=False)[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout3(x)


class TransformerEncoder(Module):
    r"""``num_layers`` independent deep copies of ``encoder_layer`` (``layers``), then ``norm``.

    ``is_causal=None`` (the default) means "not causal unless ``is_causal=True``": torch's
    detection of a causal ``mask`` only picks a faster kernel, the numbers are the same.
    ``enable_nested_tensor`` is accepted and kept; there is no nested-tensor fast path.

    Example:
        >>> enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32), num_layers=2)
        >>> enc(jnp.ones((5, 2, 16))).shape
        (5, 2, 16)
    """

    def __init__(self, encoder_layer: Module, num_layers: int, norm: Optional[Module] = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True) -> None:
        super().__init__()
        if not isinstance(encoder_layer, Module):
            raise TypeError(f"TransformerEncoder: encoder_layer must be a jparam.nn.Module, got "
                            f"{type(encoder_layer).__name__}")
        self.layers = _get_clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.use_nested_tensor = False
        self.mask_check = mask_check

    def forward(self, src: jax.Array, mask: Optional[jax.Array] = None,
                src_key_padding_mask: Optional[jax.Array] = None,
                is_causal: Optional[bool] = None) -> jax.Array:
        src = _unwrap(src)
        src_key_padding_mask = _canonical(src_key_padding_mask, src.dtype)
        mask = _canonical(mask, src.dtype)
        is_causal = is_causal is True
        output = src
        for mod in self.layers:
            output = mod(output, src_mask=mask, is_causal=is_causal,
                         src_key_padding_mask=src_key_padding_mask)
        if self.norm is not None:
            output = self.norm(output)
        return output


class TransformerDecoder(Module):
    r"""``num_layers`` independent deep copies of ``decoder_layer`` (``layers``), then ``norm``.

    Example:
        >>> dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(16, 4, 32), num_layers=2)
        >>> dec(jnp.ones((5, 2, 16)), jnp.ones((7, 2, 16))).shape
        (5, 2, 16)
    """

    def __init__(self, decoder_layer: Module, num_layers: int, norm: Optional[Module] = None) -> None:
        super().__init__()
        if not isinstance(decoder_layer, Module):
            raise TypeError(f"TransformerDecoder: decoder_layer must be a jparam.nn.Module, got "
                            f"{type(decoder_layer).__name__}")
        self.layers = _get_clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt: jax.Array, memory: jax.Array, tgt_mask: Optional[jax.Array] = None,
                memory_mask: Optional[jax.Array] = None,
                tgt_key_padding_mask: Optional[jax.Array] = None,
                memory_key_padding_mask: Optional[jax.Array] = None,
                tgt_is_causal: Optional[bool] = None, memory_is_causal: bool = False) -> jax.Array:
        output = _unwrap(tgt)
        tgt_is_causal = tgt_is_causal is True
        for mod in self.layers:
            output = mod(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                         tgt_key_padding_mask=tgt_key_padding_mask,
                         memory_key_padding_mask=memory_key_padding_mask,
                         tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)
        if self.norm is not None:
            output = self.norm(output)
        return output


class Transformer(Module):
    r"""Encoder-decoder transformer (``torch.nn.Transformer``): ``encoder`` and ``decoder`` stacks
    with final ``LayerNorm``s; every parameter with more than one dim is re-initialised with
    xavier-uniform, like torch.

    Example:
        >>> model = nn.Transformer(d_model=16, nhead=4, num_encoder_layers=1,
        ...                        num_decoder_layers=1, dim_feedforward=32, batch_first=True)
        >>> model(jnp.ones((2, 7, 16)), jnp.ones((2, 5, 16))).shape
        (2, 5, 16)
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Union[str, Callable] = relu, custom_encoder: Optional[Module] = None,
                 custom_decoder: Optional[Module] = None, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation,
                                            layer_norm_eps, batch_first, norm_first, bias,
                                            dtype=dtype)
            self.encoder = TransformerEncoder(layer, num_encoder_layers,
                                              _layer_norm(d_model, layer_norm_eps, bias, dtype))
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation,
                                            layer_norm_eps, batch_first, norm_first, bias,
                                            dtype=dtype)
            self.decoder = TransformerDecoder(layer, num_decoder_layers,
                                              _layer_norm(d_model, layer_norm_eps, bias, dtype))
        self._reset_parameters()
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    def _reset_parameters(self) -> None:
        """xavier-uniform for every parameter with ``ndim > 1`` (torch's ``_reset_parameters``)."""
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p)

    def forward(self, src: jax.Array, tgt: jax.Array, src_mask: Optional[jax.Array] = None,
                tgt_mask: Optional[jax.Array] = None, memory_mask: Optional[jax.Array] = None,
                src_key_padding_mask: Optional[jax.Array] = None,
                tgt_key_padding_mask: Optional[jax.Array] = None,
                memory_key_padding_mask: Optional[jax.Array] = None,
                src_is_causal: Optional[bool] = None, tgt_is_causal: Optional[bool] = None,
                memory_is_causal: bool = False) -> jax.Array:
        src, tgt = _unwrap(src), _unwrap(tgt)
        is_batched = src.ndim == 3
        if is_batched and src.shape[0 if self.batch_first else 1] != tgt.shape[0 if self.batch_first else 1]:
            raise ValueError(f"the batch number of src and tgt must be equal; got shapes "
                             f"{src.shape} and {tgt.shape} (batch_first={self.batch_first})")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(f"the feature number of src and tgt must be equal to d_model "
                             f"({self.d_model}); got {src.shape[-1]} and {tgt.shape[-1]}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device: Any = None, dtype: Any = None) -> jax.Array:
        """Float mask with ``-inf`` above the diagonal and ``0`` elsewhere (``(sz, sz)``).

        Example:
            >>> nn.Transformer.generate_square_subsequent_mask(3)
            Array([[  0., -inf, -inf],
                   [  0.,   0., -inf],
                   [  0.,   0.,   0.]], dtype=float32)
        """
        return _generate_square_subsequent_mask(sz, device, dtype)
