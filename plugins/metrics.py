"""Built-in metrics.

`bleu`, `chrf`, `chrf++`, `ter` through sacrebleu (corpus level, any number of references, the
sacreBLEU signature kept with each score); `rouge` through rouge-score (ROUGE-1/2/L/Lsum F1, mean
over sentences, bootstrap confidence intervals from rouge-score's aggregator); `wer`, `cer`,
`exact_match` and `distinct_n`. Hypotheses are scored as detokenised text against raw references.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional, Sequence

import numpy as np

import t2t
from t2t.metric import Score, check_lengths
from t2t.options import MetricOptions, option


def ref_streams(refs: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-sentence reference lists -> sacrebleu's reference streams (None where a sentence has fewer)."""
    n = max(len(r) for r in refs)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(n)]


class _SacreBLEU(t2t.Metric):
    """A sacrebleu metric through its per-sentence sufficient statistics."""

    def _metric(self):
        raise NotImplementedError

    def __init__(self, options=None):
        super().__init__(options)
        self.impl = self._metric()

    def sentence_stats(self, hyps, refs) -> np.ndarray:
        return np.asarray(self.impl._extract_corpus_statistics(hyps, ref_streams(refs)), dtype=np.float64)

    def score_stats(self, stats: np.ndarray) -> float:
        return float(self.impl._compute_score_from_stats(_as_int(stats)).score)

    def result(self) -> Score:
        score = super().result()
        full = self.impl._compute_score_from_stats(_as_int(self._sum))
        score.details["text"] = full.format(width=2)
        return score

    def signature(self) -> str:
        return self.impl.get_signature().format()


def _as_int(stats: np.ndarray) -> list:
    return [int(x) if float(x).is_integer() else float(x) for x in stats]


@dataclasses.dataclass(frozen=True)
class BLEUOptions(MetricOptions):
    tokenize: Literal["13a", "intl", "zh", "char", "none", "flores101", "flores200"] = option(
        "13a", help="sacrebleu's tokenizer (13a: the WMT standard)")
    lowercase: bool = option(False, help="case-insensitive BLEU")
    smooth_method: Literal["exp", "floor", "add-k", "none"] = option("exp", help="smoothing")


class BLEU(_SacreBLEU):
    """Corpus BLEU from sacrebleu (detokenised text, 13a tokenization by default)."""

    name = "bleu"
    Options = BLEUOptions

    def _metric(self):
        from sacrebleu.metrics import BLEU as Impl
        o = self.options
        return Impl(tokenize=o.tokenize, lowercase=o.lowercase, smooth_method=o.smooth_method)


@dataclasses.dataclass(frozen=True)
class ChrFOptions(MetricOptions):
    word_order: int = option(0, min=0, max=2, help="word n-gram order (2 gives chrF++)")
    char_order: int = option(6, min=1, help="character n-gram order")
    beta: int = option(2, min=1, help="recall weight")
    lowercase: bool = option(False, help="case-insensitive")


class ChrF(_SacreBLEU):
    """Character n-gram F-score (chrF) from sacrebleu."""

    name = "chrf"
    Options = ChrFOptions

    def _metric(self):
        from sacrebleu.metrics import CHRF
        o = self.options
        return CHRF(char_order=o.char_order, word_order=o.word_order, beta=o.beta, lowercase=o.lowercase)


@dataclasses.dataclass(frozen=True)
class ChrFppOptions(ChrFOptions):
    word_order: int = option(2, min=0, max=2, help="word n-gram order (2 gives chrF++)")


class ChrFpp(ChrF):
    """chrF++: chrF with word unigrams and bigrams, from sacrebleu."""

    name = "chrf++"
    Options = ChrFppOptions


@dataclasses.dataclass(frozen=True)
class TEROptions(MetricOptions):
    normalized: bool = option(False, help="normalise punctuation and tokenize")
    case_sensitive: bool = option(False, help="case-sensitive")


class TER(_SacreBLEU):
    """Translation edit rate from sacrebleu (lower is better)."""

    name = "ter"
    higher_is_better = False
    Options = TEROptions

    def _metric(self):
        from sacrebleu.metrics import TER as Impl
        return Impl(normalized=self.options.normalized, case_sensitive=self.options.case_sensitive)


# --------------------------------------------------------------------------- ROUGE


@dataclasses.dataclass(frozen=True)
class RougeOptions(MetricOptions):
    types: tuple[str, ...] = option(("rouge1", "rouge2", "rougeL", "rougeLsum"), help="ROUGE variants reported")
    use_stemmer: bool = option(True, help="Porter-stem words before matching")
    multi_ref: Literal["max", "mean"] = option("max", help="several references: best (rouge-score) or mean")
    reference: Optional[int] = option(None, min=0, help="score against this one reference only (0: the first), "
                                      "whatever multi_ref says")
    report: str = option("rouge1", help="which variant is the metric's value (for early stopping)")
    bootstrap: int = option(1000, min=0, help="bootstrap samples for confidence intervals (0: none)")


class Rouge(t2t.Metric):
    """F1 of each ROUGE variant, in percent, averaged over sentences."""

    name = "rouge"
    Options = RougeOptions

    def __init__(self, options=None):
        super().__init__(options)
        from rouge_score import rouge_scorer
        bad = [t for t in self.options.types if t not in ("rouge1", "rouge2", "rougeL", "rougeLsum")
               and not (t.startswith("rouge") and t[5:].isdigit())]
        if bad or self.options.report not in self.options.types:
            raise t2t.T2TError(f"metric rouge: types must be rouge1..9, rougeL, rougeLsum and include "
                               f"report '{self.options.report}', got {list(self.options.types)}")
        self.scorer = rouge_scorer.RougeScorer(list(self.options.types), use_stemmer=self.options.use_stemmer)

    def reset(self) -> None:
        super().reset()
        self.rows: list[np.ndarray] = []      # (types, 3) precision/recall/F per sentence, for the CI

    def sentence_scores(self, hyp: str, refs: Sequence[str]) -> np.ndarray:
        types = self.options.types
        if self.options.reference is not None:
            if self.options.reference >= len(refs):
                raise t2t.T2TError(f"metric rouge: reference {self.options.reference} asked for, but an example has "
                                   f"{len(refs)} reference(s)")
            refs = [refs[self.options.reference]]
        if self.options.multi_ref == "max":
            s = self.scorer.score_multi(list(refs), hyp)
            return np.array([[s[t].precision, s[t].recall, s[t].fmeasure] for t in types])
        all_ = [self.scorer.score(r, hyp) for r in refs]
        return np.array([[np.mean([getattr(s[t], m) for s in all_]) for m in ("precision", "recall", "fmeasure")]
                         for t in types])

    def sentence_values(self, hyps, refs) -> np.ndarray:
        """The mean F1 of all the configured ROUGE types, in percent: as the agreement measure of
        minimum Bayes risk decoding, bigram and subsequence agreement count beside word overlap."""
        check_lengths(hyps, refs)
        return np.array([100.0 * self.sentence_scores(h, r)[:, 2].mean() for h, r in zip(hyps, refs)])

    def sentence_stats(self, hyps, refs) -> np.ndarray:
        rows = np.stack([self.sentence_scores(h, r) for h, r in zip(hyps, refs)])   # (N, types, 3)
        self.rows.extend(rows)
        n = len(self.options.types)
        return np.concatenate([rows[:, :, 2], np.ones((len(hyps), 1))], axis=1).reshape(len(hyps), n + 1)

    def score_stats(self, stats: np.ndarray) -> float:
        i = self.options.types.index(self.options.report)
        return 100.0 * stats[i] / stats[-1]

    def result(self) -> Score:
        score = super().result()
        means = 100.0 * self._sum[:-1] / self._sum[-1]
        score.details.update({t: float(v) for t, v in zip(self.options.types, means)})
        if self.options.bootstrap and self.rows:
            score.details["ci95"] = self._bootstrap()
        return score

    def _bootstrap(self) -> dict:
        """rouge-score's BootstrapAggregator, with numpy's global generator seeded and restored."""
        from rouge_score import scoring
        agg = scoring.BootstrapAggregator(n_samples=self.options.bootstrap)
        for row in self.rows:
            agg.add_scores({t: scoring.Score(*row[i]) for i, t in enumerate(self.options.types)})
        saved = np.random.get_state()
        np.random.seed(12345)
        try:
            result = agg.aggregate()
        finally:
            np.random.set_state(saved)
        return {t: [100.0 * r.low.fmeasure, 100.0 * r.high.fmeasure] for t, r in result.items()}

    def signature(self) -> str:
        o = self.options
        multi = o.multi_ref if o.reference is None else f"ref{o.reference}"
        return f"rouge-score|stem:{'yes' if o.use_stemmer else 'no'}|multiref:{multi}|f1"


# --------------------------------------------------------------------------- edit distances


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


@dataclasses.dataclass(frozen=True)
class ErrorRateOptions(MetricOptions):
    lowercase: bool = option(False, help="case-insensitive")


class WER(t2t.Metric):
    """Word error rate in percent: edits to the closest reference over reference words."""

    name = "wer"
    higher_is_better = False
    Options = ErrorRateOptions

    def units(self, text: str) -> list[str]:
        text = text.lower() if self.options.lowercase else text
        return text.split()

    def sentence_stats(self, hyps, refs) -> np.ndarray:
        rows = []
        for h, rs in zip(hyps, refs):
            hu = self.units(h)
            best = min(((edit_distance(hu, self.units(r)), len(self.units(r))) for r in rs),
                       key=lambda e: e[0] / max(e[1], 1))
            rows.append(best)
        return np.array(rows, dtype=np.float64)

    def score_stats(self, stats: np.ndarray) -> float:
        return 100.0 * stats[0] / max(stats[1], 1.0)

    def signature(self) -> str:
        return f"{self.name}|case:{'lc' if self.options.lowercase else 'mixed'}"


class CER(WER):
    """Character error rate in percent (spaces count as characters)."""

    name = "cer"

    def units(self, text: str) -> list[str]:
        text = text.lower() if self.options.lowercase else text
        return list(" ".join(text.split()))


# --------------------------------------------------------------------------- others


@dataclasses.dataclass(frozen=True)
class ExactMatchOptions(MetricOptions):
    lowercase: bool = option(False, help="case-insensitive")


class ExactMatch(t2t.Metric):
    """Percentage of hypotheses equal to one of their references (surrounding spaces ignored)."""

    name = "exact_match"
    Options = ExactMatchOptions

    def sentence_stats(self, hyps, refs) -> np.ndarray:
        norm = (lambda s: " ".join(s.split()).lower()) if self.options.lowercase else (lambda s: " ".join(s.split()))
        return np.array([[float(norm(h) in {norm(r) for r in rs}), 1.0] for h, rs in zip(hyps, refs)])

    def score_stats(self, stats: np.ndarray) -> float:
        return 100.0 * stats[0] / stats[1]

    def signature(self) -> str:
        return f"exact_match|case:{'lc' if self.options.lowercase else 'mixed'}|ws:collapsed"


@dataclasses.dataclass(frozen=True)
class DistinctOptions(MetricOptions):
    n: int = option(2, min=1, max=6, help="n-gram order")


class DistinctN(t2t.Metric):
    """distinct-n (Li et al. 2016): distinct n-grams / all n-grams over the corpus's hypotheses, in %;
    the details give every order up to n."""

    name = "distinct_n"
    Options = DistinctOptions

    def reset(self) -> None:
        super().reset()
        self.seen: list[set] = [set() for _ in range(self.options.n)]
        self.total = [0] * self.options.n

    def update(self, hyps, refs) -> None:
        t2t.metric.check_lengths(hyps, refs)
        for h in hyps:
            words = h.split()
            for k in range(1, self.options.n + 1):
                grams = [tuple(words[i: i + k]) for i in range(len(words) - k + 1)]
                self.seen[k - 1].update(grams)
                self.total[k - 1] += len(grams)
        self.count += len(hyps)

    def result(self) -> Score:
        values = [100.0 * len(s) / t if t else 0.0 for s, t in zip(self.seen, self.total)]
        return Score(self.name, values[-1], True, f"distinct-{self.options.n}|ws-split",
                     {"sentences": self.count, **{f"distinct_{k + 1}": v for k, v in enumerate(values)}})


@t2t.hookimpl
def t2t_register_metrics(register):
    for cls in (BLEU, ChrF, ChrFpp, TER, Rouge, WER, CER, ExactMatch, DistinctN):
        register(cls)
