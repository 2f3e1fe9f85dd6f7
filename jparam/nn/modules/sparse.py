"""Embedding (torch layout ``(num_embeddings, embedding_dim)``, N(0, 1) init, padding_idx)."""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from jparam._convert import to_jax_array
from jparam._module import Module
from jparam._parameter import Parameter
from jparam._random import next_key
from jparam._random import normal as _host_normal, uniform as _host_uniform
from jparam.nn import functional as F

__all__ = ["Embedding"]


class Embedding(Module):
    """A lookup table: ``weight[input]``.

    Init ``N(0, 1)``; the ``padding_idx`` row is zero at init and gets no gradient.
    ``max_norm`` rescales looked-up rows in the forward (the stored weight is not rewritten,
    unlike torch's in-place renorm).

    Example:
        >>> emb = nn.Embedding(10, 3, padding_idx=0)
        >>> emb(jnp.array([[0, 2], [4, 9]])).shape
        (2, 2, 3)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None,
                 max_norm: Optional[float] = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, sparse: bool = False, _weight: Any = None,
                 _freeze: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if scale_grad_by_freq or sparse:
            raise NotImplementedError("Embedding: scale_grad_by_freq and sparse are not supported")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        if padding_idx is not None:
            if padding_idx > 0:
                if padding_idx >= num_embeddings:
                    raise AssertionError("Padding_idx must be within num_embeddings")
            elif padding_idx < 0:
                if padding_idx < -num_embeddings:
                    raise AssertionError("Padding_idx must be within num_embeddings")
                padding_idx = num_embeddings + padding_idx
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        dt = jnp.dtype(dtype) if dtype is not None else jnp.float32
        if _weight is None:
            w = _host_normal((num_embeddings, embedding_dim), jnp.float32)
            if padding_idx is not None:
                w = w.at[padding_idx].set(0.0)
            w = w.astype(dt)
        else:
            w = jnp.asarray(getattr(_weight, "data", _weight))
            if tuple(w.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"Shape of weight {tuple(w.shape)} does not match "
                                 f"num_embeddings and embedding_dim ({num_embeddings}, "
                                 f"{embedding_dim})")
        self.weight = Parameter(w, requires_grad=not _freeze)

    def forward(self, input: jax.Array) -> jax.Array:
        return F.embedding(input, self.weight.data, self.padding_idx, self.max_norm,
                           self.norm_type, self.scale_grad_by_freq, self.sparse)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += ", scale_grad_by_freq=True"
        if self.sparse is not False:
            s += ", sparse=True"
        return s

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True,
                        padding_idx: Optional[int] = None, max_norm: Optional[float] = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> "Embedding":
        """Build from a 2-d array of embeddings (frozen by default, like torch).

        Example:
            >>> emb = nn.Embedding.from_pretrained(jnp.eye(3))
            >>> emb.weight.requires_grad
            False
        """
        w = to_jax_array(embeddings, "embeddings")
        if w.ndim != 2:
            raise ValueError(f"Embeddings parameter is expected to be 2-dimensional, got shape "
                             f"{tuple(w.shape)}")
        rows, cols = w.shape
        return cls(rows, cols, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                   _weight=w, _freeze=freeze)
