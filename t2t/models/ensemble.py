"""Several trained models decoded as one: at each step the next-token distribution is the mean of
the members' distributions (log of the mean of probabilities, not the mean of log-probabilities:
a token one member rules out can still win where the others agree on it).

The ensemble keeps the model interface (`encode`, `init_state`, `decode_step`, `reorder_state`,
`select_state`, teacher forcing through `forward` / `output_rows`), so greedy, beam search,
sampling, n-best, MBR and the reference perplexity all work on it unchanged. Members must share the
target vocabulary; `Pipeline.from_checkpoint` checks they share the tokenizers too.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from t2t.models.base import Seq2Seq
from t2t.search import log_probs


class Ensemble(nn.Module):
    """Members' next-token probabilities averaged; each member keeps its own encoding and state."""

    normalized_scores = True            # decode_step returns log-probabilities: search must not renormalise

    def __init__(self, models: Sequence[Seq2Seq]):
        super().__init__()
        if len(models) < 2:
            raise ValueError("an ensemble needs at least two models")
        sizes = {m.spec.tgt_vocab for m in models}
        if len(sizes) > 1:
            raise ValueError(f"ensemble members have different target vocabularies ({sorted(sizes)} entries)")
        self.models = nn.ModuleList(models)
        self.spec = models[0].spec

    def _mix(self, log_probs: list[torch.Tensor]) -> torch.Tensor:
        """log(mean_i p_i) from the members' log-probabilities."""
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))

    def batch_lengths(self, lengths):
        """The members' largest count of each example (see Seq2Seq.batch_lengths)."""
        counted = [m.batch_lengths(lengths) for m in self.models]
        return functools.reduce(np.maximum, counted[1:], counted[0])

    # ------------------------------------------------------------------ decoding
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> dict:
        return {"members": [m.encode(src, src_lengths) for m in self.models]}

    def init_state(self, enc: dict, need_attn: bool = False) -> dict:
        return {"members": [m.init_state(e, need_attn) for m, e in zip(self.models, enc["members"])]}

    def decode_step(self, prev: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        lps, states = [], []
        for m, s in zip(self.models, state["members"]):
            scores, s = m.decode_step(prev, s)
            lps.append(log_probs(m, scores))
            states.append(s)
        new = {"members": states}
        attn = [s["attn"] for s in states if "attn" in s]
        if attn and len(attn) == len(states):
            # the mean where every member attends over the same positions, else the first's
            same = all(a.shape == attn[0].shape for a in attn)
            new["attn"] = torch.stack([a.float() for a in attn]).mean(0) if same else attn[0]
        return self._mix(lps), new

    def reorder_state(self, state: dict, rows: torch.Tensor) -> dict:
        return {"members": [m.reorder_state(s, rows) for m, s in zip(self.models, state["members"])]}

    def select_state(self, state: dict, rows: torch.Tensor, sentences: torch.Tensor) -> dict:
        return {"members": [m.select_state(s, rows, sentences) for m, s in zip(self.models, state["members"])]}

    def length_limits(self) -> tuple[int | None, int | None]:
        """The tightest of the members' limits."""
        limits = [m.length_limits() for m in self.models]
        return tuple(min((x[i] for x in limits if x[i] is not None), default=None) for i in range(2))

    # ------------------------------------------------------------------ teacher forcing
    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
                features_only: bool = False, with_encoding: bool = False):
        """As Seq2Seq.forward; the features are the members' (a list), the scores log-probabilities."""
        runs = [m(src, src_lengths, tgt_in, features_only=True, with_encoding=True) for m in self.models]
        h, enc = [r[0] for r in runs], {"members": [r[1] for r in runs]}
        out = h
        if not features_only:
            every = torch.ones(tgt_in.shape, dtype=torch.bool, device=tgt_in.device)
            out = self.output_rows(h, enc, every)(0, every.numel()).view(*tgt_in.shape, -1)
        return (out, enc) if with_encoding else out

    def output_rows(self, h: list[torch.Tensor], enc: dict, keep: torch.Tensor):
        rows = [m.output_rows(x, e, keep) for m, x, e in zip(self.models, h, enc["members"])]
        return lambda i, j: self._mix([log_probs(m, r(i, j)) for m, r in zip(self.models, rows)])
