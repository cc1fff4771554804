"""The interface every architecture shares, so one trainer and one search serve them all.

    enc = model.encode(src, src_lengths)          # once per batch
    state = model.init_state(enc)                 # decoder state: a dict of tensors
    logits, state = model.decode_step(prev, state)    # one token per row: (B,) -> (B, V)
    state = model.reorder_state(state, index)     # beam search: pick rows (B',) of state

A state is a dict. Its entry "static" holds what belongs to the source sentence (encoder memory,
its mask, precomputed attention keys), one row per sentence; every other entry belongs to the
hypothesis, one row per hypothesis. Beam search keeps the K hypotheses of a sentence in adjacent
rows, so a model finds the sentence of hypothesis row r as r // (hypothesis rows / sentence rows)
and attends over each sentence's memory once for all its beams (K times less memory traffic than
copying the memory per beam). `reorder_state` picks hypothesis rows (within their sentences; also
to widen one row per sentence into K), `select_state` drops whole sentences.

Shapes: B batch, S source length, T target length, D model dim, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from t2t.options import ModelOptions


@dataclass(frozen=True)
class ModelSpec:
    """What a model is built for: vocabulary sizes, padding id, and the source kind."""

    src_vocab: int              # 0 when the source is features
    tgt_vocab: int
    pad: int = 0
    feature_dim: int | None = None   # frame size when the source is features
    shared_vocab: bool = False       # source and target use the same ids (embeddings may be tied)


def tree_map(fn, tree: Any) -> Any:
    """Apply `fn` to every tensor in nested dicts/lists/tuples; other leaves pass through."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map(fn, v) for v in tree)
    return tree


class Seq2Seq(nn.Module):
    """Base of every encoder-decoder. Subclasses set `name`, `Options` and implement the methods."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[ModelOptions]] = ModelOptions

    def __init__(self, options: ModelOptions, spec: ModelSpec):
        super().__init__()
        self.options = options
        self.checkpoint_layers = False      # train.checkpoint_activations: recompute layers in backward
        self.spec = spec

    def run_layer(self, layer: nn.Module, *args, **kwargs):
        """`layer(*args, **kwargs)`; in training with `checkpoint_layers`, its activations are
        recomputed in the backward pass instead of kept (the same dropout masks: the random state
        is replayed)."""
        if self.checkpoint_layers and self.training and torch.is_grad_enabled():
            return checkpoint(layer, *args, use_reentrant=False, **kwargs)
        return layer(*args, **kwargs)

    def batch_lengths(self, lengths):
        """(N, 2) source and target lengths of examples -> the lengths batches are counted in (what
        the model computes over): by default the same."""
        return lengths

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> dict:
        """Encode a batch: src (B, S) ids or (B, S, F) features -> a dict with at least
        `memory` (B, S', D) and `mask` (B, S') True at real positions."""
        raise NotImplementedError

    def init_state(self, enc: dict, need_attn: bool = False) -> dict:
        """The decoder state before the first target token; with `need_attn`, each step leaves
        its attention over the source in `state["attn"]` (B, S')."""
        raise NotImplementedError

    def decode_step(self, prev: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """prev (B,) the last emitted ids -> scores (B, V) for the next token (logits or
        log-probabilities, as `output_rows` says), and the new state."""
        raise NotImplementedError

    def decode_features(self, enc: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing from an encoding: tgt_in (B, T) -> decoder outputs (B, T, D) before the
        output layer `self.out`."""
        raise NotImplementedError

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
                features_only: bool = False, with_encoding: bool = False):
        """Teacher forcing: tgt_in (B, T) -> scores (B, T, V) (see `output_rows`), or the (B, T, D)
        features, and with `with_encoding` also the encoder's output dict.

        Must equal running decode_step. The trainer asks for features and scores the non-padding
        positions in slices through `output_rows`, which keeps the (tokens, V) tensors small."""
        enc = self.encode(src, src_lengths)
        h = self.decode_features(enc, tgt_in)
        out = h
        if not features_only:
            every = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
            out = self.output_rows(h, enc, every)(0, every.numel()).view(*h.shape[:2], -1)
        return (out, enc) if with_encoding else out

    def output_rows(self, h: torch.Tensor, enc: dict, keep: torch.Tensor):
        """The output layer over the teacher-forcing positions where `keep` (B, T) is True, for the
        loss: h (B, T, D) -> a function (i, j) -> scores (j - i, V) of kept positions i..j-1, so a
        caller can take them a slice at a time. Scores are logits, or log-probabilities where the
        model mixes distributions itself (a log-softmax leaves those unchanged, so every consumer
        treats both alike)."""
        feats = h[keep]                                              # (N, D)
        return lambda i, j: self.logits(feats[i:j])

    def output_linear(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """(weight (V, D), bias (V,) or None) where training may score targets with the fused
        `t2t.loss.LinearCrossEntropy` (memory-light for large vocabularies); None: through
        `output_rows` with autograd, which t2t's own models keep so that their runs train
        bit-identically to earlier versions."""
        return None

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The output layer: h (..., D) -> logits (..., V), plus a fixed `logit_bias` where the
        model has one (a pretrained model's output bias)."""
        out = self.out(h)
        bias = getattr(self, "logit_bias", None)
        return out if bias is None else out + bias

    def training_loss(self, loss: torch.Tensor, enc: dict, tgt_out: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The loss training minimises, from the summed attention loss: as it is, or with what the
        model's auxiliary heads add (a CTC head, `t2t.models.ctc.CTCHead`). `enc` is `encode`'s
        output, `keep` the non-padding target positions."""
        head = getattr(self, "ctc", None)
        return loss if head is None else head.training_loss(loss, enc, tgt_out, keep)

    @staticmethod
    def by_sentence(x: torch.Tensor, sentences: int) -> torch.Tensor:
        """Hypothesis rows (N, T, D) -> (B, N/B*T, D): each sentence's hypotheses as one query block."""
        return x.reshape(sentences, -1, x.shape[-1])

    def cross_attention(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Source attention weights (B, T, S') under teacher forcing, for plots."""
        enc = self.encode(src, src_lengths)
        state, rows = self.init_state(enc, need_attn=True), []
        for t in range(tgt_in.shape[1]):
            _, state = self.decode_step(tgt_in[:, t], state)
            rows.append(state["attn"])
        return torch.stack(rows, dim=1)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """The output layer for decoding: h (N, D) -> logits (N, V).

        Without gradients on a CPU it multiplies by a transposed copy of the weight: for a large
        vocabulary that GEMM layout is about 20% faster. The copy is kept until the weight is
        replaced or changed in place, and dropped by every train()/eval() switch: a fused optimizer
        step (torch's fused AdamW on CPU) changes weights without bumping their version counter, so
        the counter alone would let validation during training decode with stale weights."""
        if torch.is_grad_enabled() or h.device.type != "cpu" or not isinstance(self.out, nn.Linear):
            return self.logits(h)                            # (not nn.Linear: quantized for int8 decoding)
        w = self.out.weight
        key = (w.data_ptr(), w._version, w.dtype)
        if getattr(self, "_out_t_key", None) != key:
            self._out_t = w.detach().t().contiguous()                    # (D, V)
            self._out_t_key = key
        bias = getattr(self, "logit_bias", None)
        if self.out.bias is not None:
            bias = self.out.bias if bias is None else self.out.bias + bias
        if bias is None:
            return torch.matmul(h, self._out_t)
        return torch.addmm(bias.to(h.dtype), h.reshape(-1, h.shape[-1]), self._out_t).view(*h.shape[:-1], -1)

    def train(self, mode: bool = True):
        self._out_t = self._out_t_key = None                 # see project()
        return super().train(mode)

    @staticmethod
    def reorder_state(state: dict, rows: torch.Tensor) -> dict:
        """Pick hypothesis rows (N',) within their sentences; the static part stays."""
        return {k: (v if k == "static" else tree_map(lambda t: t.index_select(0, rows), v))
                for k, v in state.items()}

    @staticmethod
    def select_state(state: dict, rows: torch.Tensor, sentences: torch.Tensor) -> dict:
        """Keep hypothesis rows (N',) and the static rows of their sentences (B',)."""
        return {k: tree_map(lambda t: t.index_select(0, sentences if k == "static" else rows), v)  # noqa: B023
                for k, v in state.items()}                                 # (the lambda runs within its item)

    def length_limits(self) -> tuple[int | None, int | None]:
        """The longest source (tokens or frames) and target (tokens, </s> included) the model
        can take; None where there is no limit."""
        return None, None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B,) lengths -> (B, S) bool mask, True at real positions."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
