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
POSITIONS = Literal["sinusoidal", "sinusoidal_halves", "sinusoidal_fairseq", "learned"]

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
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(length + offset, dim) * dim ** -0.5)
        else:
            layout = {"sinusoidal_halves": "halves", "sinusoidal_fairseq": "fairseq"}.get(kind, "interleaved")
            self.register_buffer("table", sinusoids(length + offset, dim, layout), persistent=False)
        self.length, self.offset = length, offset

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        end = start + x.shape[1]
        if end > self.length:
            raise ValueError(f"sequence of {end} positions is longer than model.max_positions {self.length}")
        return x + self.table[start + self.offset: end + self.offset].to(x.dtype)


class FeedForward(nn.Module):
    """fc2(dropout(act(fc1(x)))): (B, T, D) -> (B, T, D) through F inner units."""

    def __init__(self, dim: int, ff_dim: int, activation: str, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, ff_dim), nn.Linear(ff_dim, dim)
        self.act = _ACT[activation]
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))
