"""Text normalisation for speech synthesis: written forms -> spoken words.

"The train leaves at 10:45 and costs $3.50." -> "the train leaves at ten forty five and costs
three dollars fifty cents." The data is generated from the recipe's seed (no download); the
plugin adds the task `textnorm` and the metric `ser` (sentence error rate).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Iterator

import numpy as np

import t2t

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
       "sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
           "nine": "ninth", "twelve": "twelfth"}


def spell(n: int) -> str:
    """0 <= n < 1,000,000 in words: 4521 -> 'four thousand five hundred twenty one'."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + spell(n % 100))
    return spell(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + spell(n % 1000))


def ordinal(n: int) -> str:
    words = spell(n).split()
    last = words[-1]
    words[-1] = ORDINAL.get(last, last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join(words)


def sample(rng: random.Random) -> tuple[str, str]:
    """One (written, spoken) pair."""
    kind = rng.choice(["money", "time", "count", "ordinal", "year"])
    if kind == "money":
        d, c = rng.randint(1, 999), rng.choice([0, rng.randint(1, 99)])
        written = f"${d}" + (f".{c:02d}" if c else "")
        spoken = f"{spell(d)} dollar{'s' if d != 1 else ''}" + (f" {spell(c)} cent{'s' if c != 1 else ''}" if c else "")
        return f"it costs {written}", f"it costs {spoken}"
    if kind == "time":
        h, m = rng.randint(1, 12), rng.randint(0, 59)
        spoken = spell(h) + (" o'clock" if m == 0 else (" oh " + ONES[m] if m < 10 else " " + spell(m)))
        return f"we meet at {h}:{m:02d}", f"we meet at {spoken}"
    if kind == "count":
        n = rng.randint(2, 99999)
        return f"{n:,} people came", f"{spell(n)} people came"
    if kind == "ordinal":
        n = rng.randint(1, 99)
        suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"she finished {n}{suffix}", f"she finished {ordinal(n)}"
    y = rng.randint(1901, 1999)
    return f"born in {y}", f"born in {spell(y // 100)} {spell(y % 100) if y % 100 >= 10 else 'oh ' + ONES[y % 100]}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextNormOptions(t2t.DataOptions):
    train_size: int = t2t.option(8000, min=1, help="training pairs generated")
    eval_size: int = t2t.option(300, min=1, help="validation and test pairs generated")


class TextNorm(t2t.Task):
    """Written numbers, money, times and years -> how they are read aloud."""

    name = "textnorm"
    Options = TextNormOptions
    default_metrics = ("ser", "wer")

    def read(self, split: str) -> Iterator[t2t.Example]:
        rng = random.Random(f"textnorm/{self.seed}/{split}")
        n = self.options.train_size if split == "train" else self.options.eval_size
        for i in range(n):
            written, spoken = sample(rng)
            yield t2t.Example(written, spoken, id=f"{split}-{i}")


class SentenceErrorRate(t2t.Metric):
    """Percentage of outputs that differ from every reference (lower is better)."""

    name = "ser"
    higher_is_better = False

    def sentence_stats(self, hyps, refs):
        return np.array([[float(h.strip() not in {r.strip() for r in rs}), 1.0] for h, rs in zip(hyps, refs)])

    def score_stats(self, stats):
        return 100.0 * stats[0] / stats[1]


@t2t.hookimpl
def t2t_register_tasks(register):
    register(TextNorm)


@t2t.hookimpl
def t2t_register_metrics(register):
    register(SentenceErrorRate)
