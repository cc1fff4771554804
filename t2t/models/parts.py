"""Parts the Transformer is assembled from, each chosen by an option: position tables and the
feed-forward block. A pretrained family is a choice of parts (see `t2t.pretrained`).

Shapes: B batch, T length, D model dim, F feed-forward size.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = Literal["relu", "gelu", "gelu_tanh", "silu"]
POSITIONS = Literal["sinusoidal", "sinusoidal_halves", "sinusoidal_fairseq", "learned", "relative"]
NORMS = Literal["layer", "rms"]

_ACT = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu,
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}


def sinusoids(length: int, dim: int, layout: str = "interleaved") -> torch.Tensor:
    """(length, dim) sine/cosine position table, frequencies 10000 ** (-2i / dim).

    interleaved: sin at even columns, cos at odd (t2t's own table, computed in fp32 as it always
    was); halves: all sines, then all cosines, computed in fp64 and rounded (Marian's); fairseq:
    sines then cosines at frequencies 10000 ** (-i / (dim / 2 - 1)), in fp32 (M2M100's)."""
    if layout == "fairseq":
        half = dim // 2
        inv = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
        angles = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
        table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
        return torch.cat([table, torch.zeros(length, dim % 2)], dim=1) if dim % 2 else table
    if layout == "halves":
        pos = torch.arange(length, dtype=torch.float64)[:, None]
        inv = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        angles = pos * inv
        return torch.cat([torch.sin(angles), torch.cos(angles[:, : dim // 2])], dim=1).float()
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv[: dim // 2])
    return table


class Positions(nn.Module):
    """Absolute positions added to embeddings: x (B, T, D), first position `start` -> (B, T, D).
    Position p reads row p + `offset` of the table (BART's learned table starts at row 2)."""

    def __init__(self, kind: str, length: int, dim: int, offset: int = 0):
        super().__init__()
        self.length, self.offset = length, offset
        self.relative = kind == "relative"          # positions enter as attention biases instead
        if self.relative:
            return
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(length + offset, dim) * dim ** -0.5)
        else:
            layout = {"sinusoidal_halves": "halves", "sinusoidal_fairseq": "fairseq"}.get(kind, "interleaved")
            self.register_buffer("table", sinusoids(length + offset, dim, layout), persistent=False)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        end = start + x.shape[1]
        if end > self.length:
            raise ValueError(f"sequence of {end} positions is longer than model.max_positions {self.length}")
        return x if self.relative else x + self.table[start + self.offset: end + self.offset].to(x.dtype)


class FeedForward(nn.Module):
    """fc2(dropout(act(fc1(x)))): (B, T, D) -> (B, T, D) through F inner units; gated (T5 v1.1,
    Flan-T5): fc2(dropout(act(fc1(x)) * gate(x)))."""

    def __init__(self, dim: int, ff_dim: int, activation: str, dropout: float, gated: bool = False,
                 bias: bool = True):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, ff_dim, bias=bias), nn.Linear(ff_dim, dim, bias=bias)
        self.gate = nn.Linear(dim, ff_dim, bias=bias) if gated else None
        self.act = _ACT[activation]
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        return self.fc2(self.drop(h if self.gate is None else h * self.gate(x)))


class RMSNorm(nn.Module):
    """T5's layer norm: x / sqrt(mean(x ** 2) + eps) * weight, no centring and no bias; the mean
    is taken in fp32 whatever x's precision."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * (x.to(self.weight.dtype) if self.weight.dtype in (torch.float16, torch.bfloat16) else x)


def norm(kind: str, dim: int, eps: float = 1e-5) -> nn.Module:
    """A layer norm (`layer`: LayerNorm; `rms`: RMSNorm) of `dim` features."""
    return RMSNorm(dim, eps) if kind == "rms" else nn.LayerNorm(dim, eps=eps)


class RelativePositionBias(nn.Module):
    """T5's relative positions: a learned bias per head for each bucket of key - query distance,
    exact for near distances and logarithmic up to `max_distance`; bidirectional (encoder) or
    looking back only (decoder). forward(T, S, start) -> (1, H, T, S) for queries at positions
    start .. start + T - 1 over keys 0 .. S - 1."""

    def __init__(self, heads: int, buckets: int, max_distance: int, bidirectional: bool):
        super().__init__()
        self.embed = nn.Embedding(buckets, heads)
        self.buckets, self.max_distance, self.bidirectional = buckets, max_distance, bidirectional

    def bucket(self, distance: torch.Tensor) -> torch.Tensor:
        """Key - query distances -> bucket ids."""
        n, out = self.buckets, torch.zeros_like(distance)
        if self.bidirectional:
            n //= 2
            out = out + (distance > 0).long() * n
            distance = distance.abs()
        else:
            distance = (-distance).clamp(min=0)
        exact = n // 2
        far = exact + (torch.log(distance.float().clamp(min=1) / exact) / math.log(self.max_distance / exact)
                       * (n - exact)).long()
        return out + torch.where(distance < exact, distance, far.clamp(max=n - 1))

    def forward(self, t: int, s: int, start: int = 0) -> torch.Tensor:
        device = self.embed.weight.device
        query = torch.arange(start, start + t, device=device)[:, None]
        key = torch.arange(s, device=device)[None, :]
        return self.embed(self.bucket(key - query)).permute(2, 0, 1)[None]     # (1, H, T, S)
