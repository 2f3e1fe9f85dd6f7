"""MultiheadAttention (torch's parameter names, layout, init and forward semantics)."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import Parameter, _unwrap
from jparam._random import module_key, new_key_leaf
from jparam.nn import functional as F
from jparam.nn import init
from jparam.nn.modules.linear import Linear

__all__ = ["MultiheadAttention", "NonDynamicallyQuantizableLinear"]


class NonDynamicallyQuantizableLinear(Linear):
    """``Linear`` under torch's name for ``MultiheadAttention.out_proj`` (same repr and state).

    Example:
        >>> NonDynamicallyQuantizableLinear(4, 4)(jnp.ones((2, 4))).shape
        (2, 4)
    """


class MultiheadAttention(Module):
    r"""Multi-head attention, ``torch.nn.MultiheadAttention`` with the same parameters.

    Parameters: ``in_proj_weight (3E, E)`` (or ``q_proj_weight (E, E)``, ``k_proj_weight (E, kdim)``,
    ``v_proj_weight (E, vdim)`` when ``kdim``/``vdim`` differ from ``embed_dim``),
    ``in_proj_bias (3E,)``, ``out_proj.weight/bias``, and ``bias_k``/``bias_v (1, 1, E)`` with
    ``add_bias_kv``. Init as torch: xavier-uniform projections, zero biases, xavier-normal
    ``bias_k``/``bias_v``. Masks: bool ``True`` = *not* attended, float = added. Attention
    dropout (training mode) draws from the module's own key, so it works under ``jax.jit``.

    Example:
        >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
        >>> x = jnp.ones((3, 5, 8))
        >>> out, w = mha(x, x, x)
        >>> out.shape, w.shape
        ((3, 5, 8), (3, 5, 5))
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False,
                 kdim: Optional[int] = None, vdim: Optional[int] = None,
                 batch_first: bool = False, device: Any = None, dtype: Any = None) -> None:
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads} instead")
        super().__init__()
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if not self._qkv_same_embed_dim:
            self.q_proj_weight = Parameter(init._empty((embed_dim, embed_dim), dtype))
            self.k_proj_weight = Parameter(init._empty((embed_dim, self.kdim), dtype))
            self.v_proj_weight = Parameter(init._empty((embed_dim, self.vdim), dtype))
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = Parameter(init._empty((3 * embed_dim, embed_dim), dtype))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(init._empty((3 * embed_dim,), dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        if add_bias_kv:
            self.bias_k = Parameter(init._empty((1, 1, embed_dim), dtype))
            self.bias_v = Parameter(init._empty((1, 1, embed_dim), dtype))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._rng = new_key_leaf()
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """torch's init: xavier-uniform projections, zero biases, xavier-normal ``bias_k/v``."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def forward(self, query: jax.Array, key: jax.Array, value: jax.Array,
                key_padding_mask: Optional[jax.Array] = None, need_weights: bool = True,
                attn_mask: Optional[jax.Array] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> Tuple[jax.Array, Optional[jax.Array]]:
        """``(attn_output, attn_weights)``; inputs ``(L, N, E)`` (``(N, L, E)`` with
        ``batch_first``) or unbatched ``(L, E)``, as in torch."""
        query, key, value = (_unwrap(t) for t in (query, key, value))
        is_batched = jnp.ndim(query) == 3
        if self.batch_first and is_batched:
            query, key, value = (jnp.swapaxes(t, 0, 1) for t in (query, key, value))
        use_dropout = self.training and self.dropout > 0.0
        key_rng = module_key(self) if use_dropout else None
        separate = not self._qkv_same_embed_dim
        out, weights = F.multi_head_attention_forward(
            query, key, value, self.embed_dim, self.num_heads, _unwrap(self.in_proj_weight),
            _unwrap(self.in_proj_bias), _unwrap(self.bias_k), _unwrap(self.bias_v), self.add_zero_attn,
            self.dropout, _unwrap(self.out_proj.weight), _unwrap(self.out_proj.bias),
            training=self.training, key_padding_mask=key_padding_mask, need_weights=need_weights,
            attn_mask=attn_mask, use_separate_proj_weight=separate,
            q_proj_weight=_unwrap(self.q_proj_weight), k_proj_weight=_unwrap(self.k_proj_weight),
            v_proj_weight=_unwrap(self.v_proj_weight), average_attn_weights=average_attn_weights,
            is_causal=is_causal, key_rng=key_rng)
        if self.batch_first and is_batched:
            out = jnp.swapaxes(out, 0, 1)
        return out, weights
