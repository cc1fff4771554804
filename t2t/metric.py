"""Metrics: corpus-level scores accumulated batch by batch. A metric plugin subclasses `Metric`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from t2t.errors import T2TError
from t2t.options import MetricOptions


def improves(value: float, best: float | None, higher_is_better: bool) -> bool:
    """Whether `value` beats `best` (None: nothing to beat yet) in a metric's direction; a tie does not."""
    return best is None or (value > best if higher_is_better else value < best)


@dataclass
class Score:
    """A metric's value (in the metric's usual unit, e.g. BLEU 0-100) and how it was computed."""

    name: str
    value: float
    higher_is_better: bool = True
    signature: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "higher_is_better": self.higher_is_better,
                "signature": self.signature, **({"details": self.details} if self.details else {})}


class Metric:
    """Accumulates statistics over (hypothesis, references) pairs and scores the corpus.

    Subclasses set `name`, `higher_is_better`, optionally `Options`, and implement either
    `sentence_stats` + `score_stats` (sufficient statistics that add up over sentences, which also
    gives paired bootstrap significance for free) or override `update` + `result` for metrics
    that do not decompose.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    Options: ClassVar[type[MetricOptions]] = MetricOptions

    def __init__(self, options: MetricOptions | None = None):
        self.options = options or self.Options(name=self.name)
        self.reset()

    def reset(self) -> None:
        self._sum: np.ndarray | None = None
        self.count = 0

    def sentence_stats(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> np.ndarray:
        """(N, k) statistics, one row per sentence, whose column sums determine the score."""
        raise NotImplementedError

    def score_stats(self, stats: np.ndarray) -> float:
        """The score of a corpus from the column sums of its sentence statistics."""
        raise NotImplementedError

    def signature(self) -> str:
        return ""

    @property
    def decomposes(self) -> bool:
        return type(self).sentence_stats is not Metric.sentence_stats

    def update(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
        """Add a batch: `refs[i]` is the list of references of `hyps[i]`."""
        check_lengths(hyps, refs)
        if not hyps:
            return
        stats = np.asarray(self.sentence_stats(list(hyps), [list(r) for r in refs]), dtype=np.float64)
        total = stats.sum(axis=0)
        self._sum = total if self._sum is None else self._sum + total
        self.count += len(hyps)

    def result(self) -> Score:
        if self._sum is None:
            raise T2TError(f"metric '{self.name}': nothing to score (no sentences were added)")
        return Score(self.name, float(self.score_stats(self._sum)), self.higher_is_better, self.signature(),
                     {"sentences": self.count})

    def compute(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> Score:
        """Score a whole corpus at once."""
        self.reset()
        self.update(hyps, refs)
        return self.result()

    def sentence_values(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> np.ndarray:
        """Each hypothesis scored alone against its references, in the metric's unit (the agreement
        measure of minimum Bayes risk decoding). Leaves the accumulated corpus statistics alone."""
        check_lengths(hyps, refs)
        if self.decomposes and hyps:
            stats = np.asarray(self.sentence_stats(list(hyps), [list(r) for r in refs]), dtype=np.float64)
            return np.array([self.score_stats(row) for row in stats])
        alone = type(self)(self.options)
        return np.array([alone.compute([h], [list(r)]).value for h, r in zip(hyps, refs)])


def check_lengths(hyps: Sequence, refs: Sequence) -> None:
    if len(hyps) != len(refs):
        raise T2TError(f"{len(hyps)} hypotheses but {len(refs)} references; they must pair up one to one")
