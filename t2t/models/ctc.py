"""Joint CTC/attention decoding (Watanabe et al. 2017, "Hybrid CTC/attention architecture"): every
search step scores each candidate token by

    (1 - w) * log p_attention(c | prefix) + w * log p_ctc(c | prefix)

where p_ctc(c | prefix) = P_ctc(prefix + c ...) / P_ctc(prefix ...) is the ratio of CTC prefix
probabilities over the encoder's CTC head, and p_ctc(</s> | prefix) = P_ctc(prefix) / P_ctc(prefix ...).
The CTC term keeps the decoder's hypotheses aligned with the audio: it punishes dropped words,
repeated words and endings before the speech ends, the errors an attention decoder trained on
little data makes.

`JointCTC` wraps a model with a CTC head (model.ctc_weight > 0) behind the same encode /
init_state / decode_step / reorder_state interface, so greedy, beam search and sampling run it
unchanged. The CTC forward variables of each hypothesis are part of its state and are reordered
with it. Each step costs O(S' * N * V) (a loop over the frames); above `candidates` tokens only
the decoder's likeliest `candidates` get a CTC score and the rest are ruled out, as ESPnet's
pre-beam does.

Shapes: B sentences, N hypothesis rows, S' encoder frames, V vocabulary, C candidate tokens.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from t2t.models.base import Seq2Seq
from t2t.options import Options, option

NEG = -1e30          # log(0) that stays finite, so that NEG - NEG is 0 and never NaN


def ctc_extend(x: torch.Tensor, blank: torch.Tensor, r: torch.Tensor, last: torch.Tensor,
               cand: torch.Tensor, empty: bool, keep: bool = False):
    """Extend each row's prefix g by each of its candidate tokens.

    x (S', N, C) frame log-probabilities of the candidates, blank (S', N) of the blank; r (S', N, 2)
    g's forward variables (the paths over frames 0..t that have emitted g and end in a non-blank /
    a blank at frame t); last (N,) g's last token; cand (N, C); empty: g has no token yet. Frames
    past a sentence's end must hold x = NEG and blank = 0.

    Returns log P_ctc(g + c ...) (N, C), the probability of every frame labelling that starts with
    g + c, and with `keep` also the forward variables of every g + c (S', N, C, 2)."""
    frames = x.shape[0]
    # the paths of g that c may follow at the next frame: a repeat of g's last token needs a blank between
    phi = torch.where((cand == last[:, None])[None], r[..., 1:], torch.logaddexp(r[..., :1], r[..., 1:]))
    nonblank = x[0] if empty else torch.full_like(x[0], NEG)                 # c emitted at frame 0
    psi = nonblank.clone()
    out = None
    if keep:
        out = torch.full((frames, *cand.shape, 2), NEG, dtype=x.dtype, device=x.device)
        out[0, ..., 0] = nonblank
    for t in range(1, frames):
        enter = phi[t - 1] + x[t]                                           # c first emitted at frame t
        psi = torch.logaddexp(psi, enter)
        if keep:
            out[t, ..., 1] = torch.logaddexp(out[t - 1, ..., 0], out[t - 1, ..., 1]) + blank[t][:, None]
        nonblank = torch.logaddexp(nonblank + x[t], enter)
        if keep:
            out[t, ..., 0] = nonblank
    return (psi, out) if keep else psi


@dataclasses.dataclass(frozen=True, kw_only=True)
class CTCOptions(Options):
    """The model key of a CTC head (a part of the RNN and Transformer models)."""

    ctc_weight: float = option(0.0, min=0.0, max=1.0, help="weight of an auxiliary CTC loss on the encoder "
                                                         "(speech: aligns attention sooner on small data)")


class CTCHead(nn.Linear):
    """A CTC output layer over encoder states (the blank is the padding id), and the training loss
    it adds: (1 - w) * attention loss + w * CTC loss, CTC summed over sentences like the token
    losses; where the encoder also returned a middle layer's output (`enc["inter"]`, intermediate
    CTC) the CTC loss is (1 - i) * final + i * intermediate."""

    def __init__(self, dim: int, vocab: int, blank: int, weight: float, inter_weight: float = 0.0):
        super().__init__(dim, vocab)
        self.blank, self.loss_weight, self.inter_weight = blank, weight, inter_weight

    def log_probs(self, states: torch.Tensor) -> torch.Tensor:
        """Encoder states (B, S', D) -> CTC log-probabilities (S', B, V)."""
        return torch.log_softmax(self(states).float(), dim=-1).transpose(0, 1)

    def loss(self, enc: dict, tgt_out: torch.Tensor, keep: torch.Tensor, key: str = "memory") -> torch.Tensor:
        # </s> lies beyond each label length
        return F.ctc_loss(self.log_probs(enc[key]), tgt_out, enc["mask"].sum(1), keep.sum(1) - 1,
                          blank=self.blank, reduction="sum", zero_infinity=True)

    def training_loss(self, loss: torch.Tensor, enc: dict, tgt_out: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        ctc = self.loss(enc, tgt_out, keep)
        if "inter" in enc:
            ctc = (1.0 - self.inter_weight) * ctc + self.inter_weight * self.loss(enc, tgt_out, keep, "inter")
        return (1.0 - self.loss_weight) * loss + self.loss_weight * ctc


class JointCTC(nn.Module):
    """A model decoded with joint CTC/attention scores (weight `weight` on the CTC side)."""

    normalized_scores = True            # decode_step returns final log-scores: search must not renormalise

    def __init__(self, model: Seq2Seq, weight: float, specials, candidates: int = 128):
        super().__init__()
        if getattr(model, "ctc", None) is None:
            raise ValueError("decode.ctc_weight needs a model trained with a CTC head (model.ctc_weight > 0)")
        self.model, self.weight, self.candidates = model, weight, candidates
        self.blank, self.bos, self.eos = specials.pad, specials.bos, specials.eos

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> dict:
        enc = self.model.encode(src, src_lengths)
        lp = self.model.ctc.log_probs(enc["memory"])                      # (S', B, V)
        # <s> and </s> are never CTC labels (the end of a labelling is the end of the frames)
        lp = torch.log_softmax(lp.index_fill(2, torch.tensor([self.bos, self.eos], device=lp.device), NEG), -1)
        frames = enc["mask"].sum(1)                                       # (B,)
        pad = ~enc["mask"].t()                                            # (S', B) past the end
        lp = lp.masked_fill(pad[..., None], NEG)
        lp[..., self.blank] = lp[..., self.blank].masked_fill(pad, 0.0)   # past the end: blank, prob 1
        return {**enc, "ctc_lp": lp.transpose(0, 1).contiguous(), "ctc_frames": frames}

    def init_state(self, enc: dict, need_attn: bool = False) -> dict:
        state = self.model.init_state(enc, need_attn)
        lp = enc["ctc_lp"]                                                # (B, S', V)
        static = {**state["static"], "ctc_lp": lp, "ctc_frames": enc["ctc_frames"]}
        b, frames = lp.shape[:2]
        r = torch.full((b, frames, 2), NEG, dtype=lp.dtype, device=lp.device)
        r[..., 1] = lp[..., self.blank].cumsum(1)                         # the empty prefix: blanks only
        return {**state, "static": static,
                "ctc_r": r, "ctc_psi": torch.zeros(b, device=lp.device),
                "ctc_last": torch.full((b,), -1, dtype=torch.long, device=lp.device),
                "ctc_len": 0, "ctc_started": False}

    def _rows(self, state: dict, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The sentence's CTC log-probs (S', N, V) and frame counts (N,) for each hypothesis row."""
        static = state["static"]
        per = n // static["ctc_lp"].shape[0]
        lp = static["ctc_lp"].repeat_interleave(per, 0) if per > 1 else static["ctc_lp"]
        frames = static["ctc_frames"].repeat_interleave(per, 0) if per > 1 else static["ctc_frames"]
        return lp.transpose(0, 1), frames

    def decode_step(self, prev: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        inner = {k: v for k, v in state.items() if not k.startswith("ctc_")}
        inner["static"] = {k: v for k, v in state["static"].items() if not k.startswith("ctc_")}
        logits, new_inner = self.model.decode_step(prev, inner)
        att = torch.log_softmax(logits.float(), dim=-1)                   # (N, V)
        n = prev.shape[0]
        lp, frames = self._rows(state, n)                                 # (S', N, V), (N,)
        blank = lp[..., self.blank]                                       # (S', N)
        r, last, length = state["ctc_r"].transpose(0, 1), state["ctc_last"], state["ctc_len"]
        psi_g = state["ctc_psi"]
        if state["ctc_started"]:                                          # the prefix grew by prev
            tok = prev[:, None]
            x = lp.gather(2, tok[None].expand(lp.shape[0], -1, -1))       # (S', N, 1)
            psi_g, r = ctc_extend(x, blank, r, last, tok, length == 0, keep=True)
            psi_g, r, last, length = psi_g[:, 0], r[:, :, 0], prev, length + 1
        if lp.shape[2] > self.candidates:     # a large vocabulary: CTC scores for the decoder's likeliest tokens
            cand = att.topk(self.candidates, dim=-1).indices                          # (N, M)
            x = lp.gather(2, cand[None].expand(lp.shape[0], -1, -1))                  # (S', N, M)
            psi = torch.full_like(att, NEG).scatter(1, cand, ctc_extend(x, blank, r, last, cand, length == 0))
        else:
            cand = torch.arange(lp.shape[2], device=lp.device)[None].expand(n, -1)  # every token
            psi = ctc_extend(lp, blank, r, last, cand, length == 0)                    # (N, V)
        end = r.gather(0, (frames - 1).clamp(min=0)[None, :, None].expand(1, -1, 2))[0]
        psi[:, self.eos] = torch.logaddexp(end[:, 0], end[:, 1])          # g itself is the whole labelling
        psi[:, self.blank] = NEG
        ctc = (psi - psi_g[:, None]).clamp(min=NEG)
        scores = (1.0 - self.weight) * att + self.weight * ctc
        new = {**new_inner, "static": state["static"], "ctc_r": r.transpose(0, 1).contiguous(),
               "ctc_psi": psi_g, "ctc_last": last, "ctc_len": length, "ctc_started": True}
        return scores, new

    def reorder_state(self, state: dict, rows: torch.Tensor) -> dict:
        return self.model.reorder_state(state, rows)

    def select_state(self, state: dict, rows: torch.Tensor, sentences: torch.Tensor) -> dict:
        return self.model.select_state(state, rows, sentences)

    def length_limits(self):
        return self.model.length_limits()
