"""Attention: Luong dot/general and Bahdanau additive scores for the RNN; multi-head attention over
`scaled_dot_product_attention` for the Transformer.

Shapes: B batch, S source length, T query length, D dim, H heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SourceAttention(nn.Module):
    """Single-head attention of decoder states over encoder memory.

    `dot` (Luong): q . m; `general` (Luong): q . W m; `additive` (Bahdanau): v . tanh(W q + U m).
    The memory-side projection is computed once per sentence by `keys()`.
    """

    def __init__(self, kind: str, query_dim: int, memory_dim: int, hidden: int | None = None):
        super().__init__()
        self.kind = kind
        if kind == "dot":
            if query_dim != memory_dim:
                raise ValueError(f"dot attention needs equal sizes, got query {query_dim} and memory {memory_dim}")
        elif kind == "general":
            self.w = nn.Linear(memory_dim, query_dim, bias=False)
        elif kind == "additive":
            hidden = hidden or query_dim
            self.w_q = nn.Linear(query_dim, hidden, bias=False)
            self.w_m = nn.Linear(memory_dim, hidden, bias=True)
            self.v = nn.Linear(hidden, 1, bias=False)
        else:
            raise ValueError(f"unknown attention '{kind}'; use dot, general or additive")

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """memory (B, S, Dm) -> what scores compare queries against (B, S, Dk)."""
        if self.kind == "dot":
            return memory
        if self.kind == "general":
            return self.w(memory)
        return self.w_m(memory)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, T, Dq), keys from `keys()`, memory (B, S, Dm), mask (B, S) True=real ->
        context (B, T, Dm), weights (B, T, S) summing to 1 over real positions."""
        if self.kind == "additive":
            scores = self.v(torch.tanh(self.w_q(query).unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))                 # (B, T, S)
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
        return torch.bmm(weights, memory), weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention with fused projections and an optional key/value cache.

    Self-attention projects q, k, v with one matrix; cross-attention projects k, v of the memory
    once (`memory_kv`) and reuses them at every decoding step.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, cross: bool = False, head_dim: int | None = None,
                 bias: bool = True, scale: bool = True):
        super().__init__()
        if head_dim is None and dim % heads:
            raise ValueError(f"heads {heads} must divide dim {dim}")
        self.heads, self.head_dim = heads, head_dim or dim // heads
        self.dim = inner = self.heads * self.head_dim           # T5's heads x d_kv may differ from the model's dim
        self.scale = self.head_dim ** -0.5 if scale else 1.0    # T5 scales no scores
        self.cross = cross
        if cross:
            self.q = nn.Linear(dim, inner, bias=bias)
            self.kv = nn.Linear(dim, 2 * inner, bias=bias)
        else:
            self.qkv = nn.Linear(dim, 3 * inner, bias=bias)
        self.out = nn.Linear(inner, dim, bias=bias)
        self.dropout = dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape                                       # (B, T, D) -> (B, H, T, D/H)
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = x.shape                                    # (B, H, T, D/H) -> (B, T, D)
        return x.transpose(1, 2).reshape(b, t, self.dim)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values of the memory (B, S, D) -> 2 x (B, H, S, D/H)."""
        k, v = self.kv(memory).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: dict | None = None, need_weights: bool = False, bias: torch.Tensor | None = None):
        """x (B, T, D) -> (B, T, D) [and weights (B, T, S) averaged over heads].

        mask: (B, 1 or T, S) bool, True where attention is allowed (or None).
        kv: precomputed memory keys/values (cross-attention).
        cache: dict with "k", "v" (B, H, t, D/H) from earlier steps (self-attention, decoding);
        the new keys/values are appended and the updated cache is returned in its place.
        bias: (1 or B, H, T, S) added to the scores (T5's relative position bias).
        """
        if self.cross:
            q = self._split(self.q(x))
            k, v = kv
        else:
            q, k, v = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))
            if cache is not None:
                if "k" in cache:
                    k = torch.cat([cache["k"], k], dim=2)
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        attn_mask = None if mask is None else mask[:, None]         # (B, 1, T|1, S)
        if bias is not None:                                        # one additive mask: bias, causality, padding
            t, s = q.shape[2], k.shape[2]
            if causal:
                bias = bias.masked_fill(~torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t),
                                        float("-inf"))
            if attn_mask is not None:
                bias = bias.masked_fill(~attn_mask, float("-inf"))
            attn_mask, causal = bias.to(q.dtype), False
        # CPU bf16: the fused kernel's backward is several times slower than plain matmuls here
        if need_weights or (q.device.type == "cpu" and q.dtype == torch.bfloat16):
            out, weights = self._math(q, k, v, attn_mask, causal)
            out = self.out(self._merge(out))
            return (out, weights.mean(dim=1)) if need_weights else out
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0,
                                             is_causal=causal and attn_mask is None,
                                             **({} if self.scale == self.head_dim ** -0.5 else {"scale": self.scale}))
        return self.out(self._merge(out))

    def _math(self, q, k, v, attn_mask, causal):
        """Attention as explicit products; softmax in fp32. -> out (B, H, T, D/H), weights (B, H, T, S)."""
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        t, s = scores.shape[-2:]
        if causal:
            scores = scores.masked_fill(~torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t),
                                        float("-inf"))
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        elif attn_mask is not None:
            scores = scores + attn_mask
        weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        return torch.matmul(F.dropout(weights, self.dropout, self.training), v), weights
