"""Source front-ends: token embeddings for text, convolutional subsampling for feature frames.

Both map (src, lengths) -> (x (B, S', E), lengths (B,)), so encoders do not care which kind of
source they read. Shapes: B batch, S source length, F feature size, E output size.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import nn

from t2t.models.base import ModelSpec
from t2t.options import Options, option


@dataclasses.dataclass(frozen=True, kw_only=True)
class FeatureSourceOptions(Options):
    """The model key of the feature-frame front end (a part of the RNN and Transformer models)."""

    subsample_channels: int = option(64, min=1, help="feature sources (speech): channels of the two stride-2 "
                                     "convolutions that subsample frames by 4 (their cost grows with the square)")
    feature_stem: Literal["conv2d", "conv1d"] = option("conv2d", help="feature sources: conv2d (two stride-2 "
                                                       "2-D convolutions, frames / 4) or conv1d (Whisper's: two "
                                                       "1-D convolutions over time with GELU, frames / 2)")


class TokenEmbedding(nn.Module):
    """Ids (B, S) -> embeddings (B, S, E), optionally scaled by sqrt(E) (Transformer)."""

    def __init__(self, vocab: int, dim: int, pad: int, dropout: float = 0.0, scale: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=pad)
        self.scale = dim ** 0.5 if scale else 1.0
        self.drop = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.drop(self.embed(src) * self.scale), lengths


class ConvSubsampler(nn.Module):
    """Feature frames (B, S, F) -> (B, ~S/4, E) with two stride-2 3x3 convolutions and ReLU,
    then a linear layer (the usual speech front-end: 10 ms frames become 40 ms)."""

    def __init__(self, feature_dim: int, dim: int, dropout: float = 0.0, *, channels: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU())
        freq = ((feature_dim - 1) // 2 - 1) // 2
        self.proj = nn.Linear(channels * freq, dim)
        self.drop = nn.Dropout(dropout)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return (((lengths - 1) // 2 - 1) // 2).clamp(min=1)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if src.shape[1] < 7:                                        # the convolutions need 7 frames
            src = nn.functional.pad(src, (0, 0, 0, 7 - src.shape[1]))
        x = self.conv(src.unsqueeze(1))                             # (B, C, S', F')
        b, c, s, f = x.shape
        x = self.proj(x.transpose(1, 2).reshape(b, s, c * f))       # (B, S', E)
        return self.drop(x), self.output_lengths(lengths).clamp(max=s)


class Conv1dStem(nn.Module):
    """Feature frames (B, S, F) -> (B, ceil(S/2), E): a 1-D convolution over time (kernel 3) from F
    to E channels, GELU, a second one of stride 2, GELU (Whisper's encoder stem).

    With `frames` (Whisper's 3000, from model.source_positions), inputs of fewer frames are
    Whisper's log-mel with its trailing silence left out (`log_mel(trim=True)`: a feature cache
    30x smaller): each is filled up to `frames` with that silence, whose value follows from its own
    frames (floored 8 below the loudest: max(-1.5, top - 2) after Whisper's scaling), and the
    encoder sees all of them, as Whisper's does."""

    def __init__(self, feature_dim: int, dim: int, dropout: float = 0.0, frames: int | None = None):
        super().__init__()
        self.conv1 = nn.Conv1d(feature_dim, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.drop = nn.Dropout(dropout)
        self.frames = frames

    def fill(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, F) trimmed log-mel frames -> (B, frames, F), each filled with its silence."""
        b, s, f = src.shape
        real = (torch.arange(s, device=src.device)[None, :] < lengths[:, None])[..., None]     # (B, S, 1)
        top = src.masked_fill(~real, float("-inf")).amax(dim=(1, 2))
        # log_mel's floors, after its (x + 4) / 4: log10(1e-10) = -10 -> -1.5; 8 below the loudest -> 2
        silence = torch.clamp(top - 2.0, min=-1.5).to(src.dtype)                              # (B,)
        out = silence[:, None, None].expand(b, self.frames, f).clone()
        out[:, :s] = torch.where(real, src, out[:, :s])
        return out, torch.full_like(lengths, self.frames)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.frames and (src.shape[1] < self.frames or bool((lengths < self.frames).any())):
            src, lengths = self.fill(src[:, : self.frames], lengths.clamp(max=self.frames))
        x = nn.functional.gelu(self.conv1(src.transpose(1, 2)))
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)
        return self.drop(x), (lengths + 1) // 2


def source_embedder(spec: ModelSpec, dim: int, dropout: float, scale: bool = False, *,
                    channels: int, stem: str = "conv2d", frames: int | None = None) -> nn.Module:
    """The front-end for the spec's source kind (`channels`: the 2-D subsampler's,
    model.subsample_channels; `stem`: model.feature_stem)."""
    if spec.feature_dim is not None and stem == "conv1d":
        return Conv1dStem(spec.feature_dim, dim, dropout, frames)
    if spec.feature_dim is not None:
        return ConvSubsampler(spec.feature_dim, dim, dropout, channels=channels)
    return TokenEmbedding(spec.src_vocab, dim, spec.pad, dropout, scale)
