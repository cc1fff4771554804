"""Decoding over `encode` / `decode_step` / `reorder_state`: greedy, beam search, sampling.

Pure functions of (model, source batch, settings); no architecture is special-cased. Finished
sentences leave the batch as soon as they are done, so long tails do not cost the whole batch.

Shapes: B sentences, K beam, V vocabulary, S source length, N = B*K rows.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

import torch

from t2t.errors import DecodeBudgetError
from t2t.metric import Metric
from t2t.models.base import Seq2Seq
from t2t.options import MAX_OUTPUT_TOKENS, DecodeOptions


@dataclass
class Hypothesis:
    """One output. `score` ranks hypotheses (length-normalised, penalties included); `logprob` is
    the model's own log-probability of `tokens` followed by </s>."""

    tokens: list[int]
    score: float
    logprob: float
    token_logprobs: list[float] | None = None     # one per token, </s> included
    attention: torch.Tensor | None = None         # (len(tokens) + 1, S)


@dataclass
class Budget:
    """Bounds on one search, checked at every step so that the search stops itself: output tokens
    (hypothesis rows summed over steps), a deadline (time.monotonic()), and an event that stops it
    at once (a server shutting down)."""

    max_tokens: int | None = None
    deadline: float | None = None
    stop: threading.Event | None = None
    used: int = 0

    def spend(self, rows: int) -> None:
        self.used += rows
        if self.stop is not None and self.stop.is_set():
            raise DecodeBudgetError("stopped", "decoding stopped: the server is shutting down")
        if self.max_tokens is not None and self.used > self.max_tokens:
            raise DecodeBudgetError("tokens", f"decoding stopped after {self.used:,} output tokens (the limit is "
                                    f"{self.max_tokens:,})")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DecodeBudgetError("time", "decoding stopped: the batch ran past its time limit")


@dataclass(frozen=True)
class Specials:
    """The ids search treats specially. `bos` starts the decoder and `eos` ends an output; `banned`
    are never put out (None: <pad> and the start id, t2t's rule); `forced_bos` is put out first
    where a model is told its target language so; `forced_eos` (under `decode.rules:
    transformers`): at the length limit </s> is forced with log-probability 0 instead of the
    output simply stopping there. `prompt` is fed to the decoder after `bos` before search begins,
    as transformers feeds a decoder prompt (Whisper's language and task tokens): no part of the
    output, its length or its score; `banned_first` are never the first token after it."""

    bos: int = 2
    eos: int = 3
    pad: int = 0
    unk: int = 1
    banned: tuple[int, ...] | None = None
    forced_bos: int | None = None
    forced_eos: bool = False
    prompt: tuple[int, ...] = ()
    banned_first: tuple[int, ...] = ()


def length_penalty(length: torch.Tensor | float, alpha: float, rules: str = "t2t"):
    """What a hypothesis's log-probability is divided by; length counts </s>. t2t: GNMT's
    ((5 + length) / 6) ** alpha; transformers: length ** alpha."""
    if rules == "transformers":
        return length ** alpha
    return ((5.0 + length) / 6.0) ** alpha


def log_probs(model, scores: torch.Tensor) -> torch.Tensor:
    """decode_step's scores (N, V) -> the log-scores search ranks by: log-softmax of logits, or the
    scores themselves for a decoder that combines its own (`normalized_scores`, e.g. joint CTC)."""
    if getattr(model, "normalized_scores", False):
        return scores.float().clone()
    return torch.log_softmax(scores.float(), dim=-1)


def max_lengths(src_lengths: torch.Tensor, opts: DecodeOptions, model: Seq2Seq | None = None,
                prompt: int = 0) -> torch.Tensor:
    """(B,) longest output (in tokens, </s> included) for each source: a * source length + b,
    within the model's limit (less a decoder `prompt` of that many tokens) and MAX_OUTPUT_TOKENS.
    `min_len` never lengthens it: where the two disagree the maximum wins (`_penalize_` lets </s>
    through at the limit)."""
    limit = (src_lengths.double() * opts.max_len_a + opts.max_len_b).clamp(1, MAX_OUTPUT_TOKENS).long()
    most = model.length_limits()[1] if model is not None else None
    return limit.clamp(max=max(most - prompt, 1)) if most else limit


def start(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, sp: Specials,
          need_attention: bool) -> tuple[dict, torch.Tensor]:
    """The decoder's state after the start token and any prompt (`Specials.prompt`), and the
    input of the first search step."""
    state = model.init_state(model.encode(src, src_lengths), need_attn=need_attention)
    prev = torch.full((src.shape[0],), sp.bos, dtype=torch.long, device=src.device)
    for token in sp.prompt:
        _, state = model.decode_step(prev, state)
        prev = torch.full_like(prev, token)
    return state, prev


def min_lengths(limit: torch.Tensor, opts: DecodeOptions) -> torch.Tensor:
    """(B,) the `min_len` each output gets: the asked one, clamped below its maximum length."""
    return limit.clamp(max=opts.min_len + 1) - 1


@torch.no_grad()
def generate(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, opts: DecodeOptions,
             specials: Specials = Specials(), generator: torch.Generator | None = None,
             need_attention: bool = False, budget: Budget | None = None) -> list[list[Hypothesis]]:
    """Decode a batch with the settings in `opts`: nbest hypotheses for each source, best first.
    A `budget` stops it (DecodeBudgetError) where it runs out."""
    if opts.sampling:
        return [[h] for h in sample(model, src, src_lengths, opts, specials, generator, need_attention, budget)]
    if opts.beam == 1:
        return [[h] for h in greedy(model, src, src_lengths, opts, specials, need_attention, budget)]
    return beam_search(model, src, src_lengths, opts, specials, need_attention, budget)


def _penalize_(lp: torch.Tensor, step: int, hist: torch.Tensor, limit: torch.Tensor,
               opts: DecodeOptions, sp: Specials) -> None:
    """Apply the search constraints for output position `step` to log-probs lp (N, V), in place.

    hist (N, step) tokens so far; limit (N,) maximum lengths (</s> included). A finite entry
    differs from the model's log-probability only by the unknown-token penalty (see `_model_lp`)
    and forced tokens (log-probability 0, as transformers' generate has them)."""
    banned = (sp.pad, sp.bos) if sp.banned is None else sp.banned
    if banned:
        lp[:, list(banned)] = -math.inf
    if opts.unk_penalty:
        lp[:, sp.unk] -= opts.unk_penalty
    if step < opts.min_len:                                                # not where the limit forces </s>
        lp[:, sp.eos] = torch.where(step + 1 >= limit, lp[:, sp.eos], -math.inf)
    n = opts.no_repeat_ngram_size
    if n and step >= n - 1 and hist.shape[1] >= n - 1:
        if n == 1:
            banned_rows = torch.arange(hist.shape[0], device=lp.device)[:, None].expand_as(hist)
            lp[banned_rows.reshape(-1), hist.reshape(-1)] = -math.inf
        elif hist.shape[1] >= n:
            grams = hist.unfold(1, n, 1)                                   # (N, W, n)
            prefix = hist[:, hist.shape[1] - (n - 1):]                     # (N, n-1)
            match = (grams[:, :, :-1] == prefix[:, None, :]).all(-1)       # (N, W)
            rows, cols = match.nonzero(as_tuple=True)
            lp[rows, grams[rows, cols, -1]] = -math.inf
    at_limit = step + 1 >= limit
    if at_limit.any() and (opts.rules == "t2t" or sp.forced_eos):          # only </s> is left
        eos = lp[at_limit, sp.eos].clone() if opts.rules == "t2t" else 0.0
        lp[at_limit] = -math.inf
        lp[at_limit, sp.eos] = eos
    if step == 0 and sp.banned_first:
        lp[:, list(sp.banned_first)] = -math.inf
    if step == 0 and sp.forced_bos is not None:
        lp.fill_(-math.inf)
        lp[:, sp.forced_bos] = 0.0


def _model_lp(lp: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor, opts: DecodeOptions,
              sp: Specials) -> torch.Tensor:
    """The model's own log-probabilities of chosen tokens, from penalised log-probs."""
    picked = lp[rows, tokens]
    return picked + opts.unk_penalty * (tokens == sp.unk) if opts.unk_penalty else picked


# --------------------------------------------------------------------------- one path per sentence


@torch.no_grad()
def greedy(model, src, src_lengths, opts, specials=Specials(), need_attention=False, budget=None) -> list[Hypothesis]:
    """The most likely next token at every step."""
    return _single_path(model, src, src_lengths, opts, specials, lambda lp: lp.argmax(-1), need_attention, budget)


@torch.no_grad()
def sample(model, src, src_lengths, opts, specials=Specials(), generator=None, need_attention=False, budget=None):
    """Ancestral sampling with temperature, top-k and top-p (nucleus) filtering."""

    def choose(lp: torch.Tensor) -> torch.Tensor:
        logits = filter_logits(lp / opts.temperature, opts.top_k, opts.top_p)
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _single_path(model, src, src_lengths, opts, specials, choose, need_attention, budget)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Keep the `top_k` largest, then the smallest set whose probability reaches `top_p`."""
    logits = logits.clone()
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits[logits < kth] = -math.inf
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = probs.cumsum(-1) - probs                   # mass of the strictly better tokens
        remove = before >= top_p
        remove[:, 0] = False
        logits.scatter_(1, order, sorted_logits.masked_fill(remove, -math.inf))
    return logits


def _single_path(model, src, src_lengths, opts, sp, choose, need_attention, budget=None) -> list[Hypothesis]:
    b = src.shape[0]
    state, prev = start(model, src, src_lengths, sp, need_attention)
    limit = max_lengths(src_lengths, opts, model, len(sp.prompt))
    rows = torch.arange(b, device=src.device)                 # sentence of each active row
    hist = torch.zeros(b, 0, dtype=torch.long, device=src.device)
    tok_lp = torch.zeros(b, 0, device=src.device)
    attn = [] if need_attention else None
    out: list[Hypothesis | None] = [None] * b
    for step in range(int(limit.max())):
        if budget is not None:
            budget.spend(len(rows))
        logits, state = model.decode_step(prev, state)
        lp = log_probs(model, logits)
        _penalize_(lp, step, hist, limit[rows], opts, sp)
        tok = choose(lp)
        hist = torch.cat([hist, tok[:, None]], dim=1)
        tok_lp = torch.cat([tok_lp, _model_lp(lp, torch.arange(len(tok), device=tok.device), tok, opts, sp)[:, None]], dim=1)
        if attn is not None:
            attn.append(state["attn"].float())
        done = tok == sp.eos
        if opts.rules == "transformers":                   # there an output also ends at the limit as it is
            done |= step + 1 >= limit[rows]
        if done.any():
            length = hist.shape[1]
            for i in done.nonzero().flatten().tolist():
                lps = tok_lp[i]
                a = torch.stack([s[i] for s in attn]) if attn is not None else None
                logprob = float(lps.sum())
                tokens = hist[i, :-1] if tok[i] == sp.eos else hist[i]
                out[int(rows[i])] = Hypothesis(tokens.tolist(), logprob / length_penalty(length, opts.length_penalty,
                                                                                          opts.rules),
                                               logprob, lps.tolist(), a)
            keep = (~done).nonzero().flatten()
            if keep.numel() == 0:
                break
            state = model.select_state(state, keep, keep)
            rows, tok, hist, tok_lp = rows[keep], tok[keep], hist[keep], tok_lp[keep]
            if attn is not None:
                attn = [s[keep] for s in attn]
        prev = tok
    return out


# --------------------------------------------------------------------------- beam search


@torch.no_grad()
def beam_search(model, src, src_lengths, opts, sp=Specials(), need_attention=False,
                budget: Budget | None = None) -> list[list[Hypothesis]]:
    """Beam search over B x K rows at once, by one of two rules (`decode.rules`).

    At each step the 2K best extensions of a sentence's beams are ranked and the best K that do not
    end go on. t2t: every extension among the 2K that ends in </s> joins the sentence's finished
    list; a sentence stops when it has `nbest` finished hypotheses and no open beam can still beat
    the worst of them (open scores only fall, and the GNMT penalty can lift them at most to
    score / lp(max length)). transformers (as its `generate`): only endings among the best K
    count, an output also ends at the length limit, the penalty is length ** alpha, and a sentence
    stops by `decode.early_stopping` once K hypotheses are finished: `heuristic` when the best open
    beam, normalised at its current length, cannot beat the worst of them; `never` the same at the
    maximum length (for alpha > 0); `k_finished` at once."""
    device, b, k, alpha = src.device, src.shape[0], opts.beam, opts.length_penalty
    hf = opts.rules == "transformers"
    keep_best = k if hf else opts.nbest                # finished hypotheses the stopping rule counts
    state, prev = start(model, src, src_lengths, sp, need_attention)
    limit = max_lengths(src_lengths, opts, model, len(sp.prompt))        # (B,)
    sent = torch.arange(b, device=device)                                # sentence of each active group
    # Before the first token every beam of a sentence is the same, so step 0 runs one row per
    # sentence (width 1) and its best K extensions become the K beams.
    width = 1
    scores = torch.zeros(b, 1, device=device)                            # penalised log-prob sums
    hist = torch.zeros(b, 0, dtype=torch.long, device=device)
    tok_lp = torch.zeros(b, 0, device=device)
    attn_hist = torch.zeros(b, 0, src.shape[1], device=device) if need_attention else None
    finished: list[list[Hypothesis]] = [[] for _ in range(b)]
    kth_best = torch.full((b,), -math.inf, device=device)                # keep_best-th finished score
    for step in range(int(limit.max())):
        n = sent.shape[0]
        if budget is not None:
            budget.spend(n * width)
        logits, state = model.decode_step(prev, state)
        lp = log_probs(model, logits)                                     # (n*width, V)
        _penalize_(lp, step, hist, limit[sent].repeat_interleave(width), opts, sp)
        # a sentence's 2K best extensions are among each row's 2K best log-probs (a row adds one
        # score, its beam's, to all): rank those, not every (beam, token) pair
        row_s, row_t = lp.topk(min(2 * k, lp.shape[1]), dim=1)            # (n*width, c)
        c = row_s.shape[1]
        cand = (scores.view(-1, 1) + row_s).view(n, width * c)
        top_s, top_j = cand.topk(min(2 * k, width * c), dim=1)            # (n, 2K), sorted
        parent = torch.arange(n, device=device)[:, None] * width + top_j // c   # rows (n, 2K)
        token = row_t.view(n, width * c).gather(1, top_j)
        ends = (token == sp.eos) & torch.isfinite(top_s)
        if hf:
            ends |= (step + 1 >= limit[sent])[:, None] & torch.isfinite(top_s)
            joins = ends.clone()
            joins[:, k:] = False                                          # only the best K may finish
        else:
            joins = ends
        step_attn = state["attn"].float() if need_attention else None
        if joins.any():
            length = step + 1
            end_lp = _model_lp(lp, parent[joins], token[joins], opts, sp).tolist()
            for (g, j), last in zip(joins.nonzero().tolist(), end_lp):
                r = int(parent[g, j])
                lps = tok_lp[r].tolist() + [last]
                a = torch.cat([attn_hist[r], step_attn[r][None]]) if need_attention else None
                tokens = hist[r].tolist() + ([] if token[g, j] == sp.eos else [int(token[g, j])])
                score = float(top_s[g, j]) / length_penalty(length, alpha, opts.rules)
                finished[int(sent[g])].append(Hypothesis(tokens, score, sum(lps), lps, a))
            for g in joins.any(1).nonzero().flatten().tolist():
                best = sorted((h.score for h in finished[int(sent[g])]), reverse=True)
                if len(best) >= keep_best:
                    kth_best[sent[g]] = best[keep_best - 1]
        # the K best extensions that do not end the sentence go on
        go_s, go_j = top_s.masked_fill(ends, -math.inf).topk(k, dim=1)    # (n, K)
        rows = parent.gather(1, go_j).view(-1)
        new_tok = token.gather(1, go_j).view(-1)
        scores = go_s
        hist = torch.cat([hist[rows], new_tok[:, None]], dim=1)
        tok_lp = torch.cat([tok_lp[rows], _model_lp(lp, rows, new_tok, opts, sp)[:, None]], dim=1)
        if need_attention:
            attn_hist = torch.cat([attn_hist[rows], step_attn[rows][:, None]], dim=1)
        state = model.reorder_state(state, rows)                           # step 0: 1 row -> K rows

        width = k
        prev = new_tok
        # which sentences are done
        best_open = scores.max(dim=1).values
        if hf:
            length = limit[sent].float() if opts.early_stopping == "never" and alpha > 0 else float(step + 1)
            bound = best_open / length_penalty(length, alpha, opts.rules)
            if opts.early_stopping == "k_finished":
                bound = torch.where(torch.isfinite(kth_best[sent]), -math.inf, bound)
        else:
            bound = best_open / length_penalty(limit[sent].float(), alpha) if alpha > 0 else best_open
        done = (bound <= kth_best[sent]) | ~torch.isfinite(best_open) | (step + 1 >= limit[sent])
        if done.all():
            break
        if done.any():
            keep = (~done).nonzero().flatten()
            keep_rows = (keep[:, None] * k + torch.arange(k, device=device)).view(-1)
            sent, scores = sent[keep], scores[keep]
            state = model.select_state(state, keep_rows, keep)
            prev, hist, tok_lp = prev[keep_rows], hist[keep_rows], tok_lp[keep_rows]
            if need_attention:
                attn_hist = attn_hist[keep_rows]
    return [sorted(f, key=lambda h: -h.score)[: opts.nbest] for f in finished]


# --------------------------------------------------------------------------- strategies over whole inputs
# `decode(sources, opts)` is one of the searches above run over encoded, batched inputs
# (`Pipeline.search`); these build on it.

def draw(decode: Callable, sources: Sequence, opts: DecodeOptions, k: int) -> list[list[Hypothesis]]:
    """k independent samples of each source (each source decoded k times)."""
    one = dataclasses.replace(opts, mbr=0, nbest=1)
    drawn = decode([s for s in sources for _ in range(k)], one)
    return [[h for d in drawn[i * k: (i + 1) * k] for h in d] for i in range(len(sources))]


def mbr(decode: Callable, sources: Sequence, opts: DecodeOptions, detokenize: Callable, metric) -> list[list[Hypothesis]]:
    """Minimum Bayes risk: `opts.mbr` candidates a source (the beam's n-best, or as many samples),
    ranked by their agreement with one another under `metric`; the first `opts.nbest` kept."""
    k = opts.mbr
    pools = (draw(decode, sources, opts, k) if opts.sampling else
             decode(sources, dataclasses.replace(opts, mbr=0, nbest=k)))
    ranked = []
    for pool in pools:
        order = mbr_order([detokenize(h.tokens) for h in pool], metric)
        ranked.append([pool[i] for i in order][: opts.nbest])
    return ranked


def mbr_order(texts: Sequence[str], metric: Metric) -> list[int]:
    """Minimum Bayes risk: the indices of `texts` (candidate outputs for one input), the one the
    others agree with most first. A candidate's support is its mean `metric.sentence_values` with
    each other candidate as the reference (negated for a lower-is-better metric); ties keep the
    given order."""
    n = len(texts)
    if n < 2:
        return list(range(n))
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    values = metric.sentence_values([texts[i] for i, _ in pairs], [[texts[j]] for _, j in pairs])
    support = np.zeros(n)
    np.add.at(support, [i for i, _ in pairs], values if metric.higher_is_better else -values)
    return sorted(range(n), key=lambda i: (-support[i], i))
