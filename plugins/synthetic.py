"""Synthetic tasks whose data t2t makes itself, deterministically from the recipe's seed.

`dates`: a date written in one of many forms -> the ISO date ("the 5th of March 2019" ->
"2019-03-05"). Dates are split between train/valid/test by a fixed hash, so the test dates never
occur in training. `reverse`: a random word -> the word reversed (a quick check that a model can
learn at all).
"""

from __future__ import annotations

import dataclasses
import datetime
import random
from typing import Iterator

import t2t
from t2t.options import DataOptions, option

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _formats(d: datetime.date) -> list[str]:
    m, mm = MONTHS[d.month - 1], MONTHS[d.month - 1][:3]
    return [
        f"{m} {d.day}, {d.year}",
        f"{mm} {d.day}, {d.year}",
        f"{d.day} {m} {d.year}",
        f"{d.day} {mm} {d.year}",
        f"{d.day:02d}.{d.month:02d}.{d.year}",
        f"{d.month}/{d.day}/{d.year}",
        f"{d.year}/{d.month:02d}/{d.day:02d}",
        f"{WEEKDAYS[d.weekday()]}, {m} {d.day}, {d.year}",
        f"the {_ordinal(d.day)} of {m} {d.year}",
        f"{_ordinal(d.day)} {m} {d.year}",
        f"{m.lower()} {d.day} {d.year}",
        f"{m.upper()} {d.day}, {d.year}",
        f"{WEEKDAYS[d.weekday()][:3]} {d.day} {mm} {d.year}",
    ]


@dataclasses.dataclass(frozen=True)
class DatesOptions(DataOptions):
    train_size: int = option(20000, min=1, help="training examples generated")
    valid_size: int = option(500, min=1, help="validation examples generated")
    test_size: int = option(1000, min=1, help="test examples generated")
    first_year: int = option(1900, min=1, max=9999, help="earliest year")
    last_year: int = option(2099, min=1, max=9999, help="latest year")


class Dates(t2t.Task):
    """Dates in many written forms -> ISO 8601 dates."""

    name = "dates"
    Options = DatesOptions
    default_metrics = ("exact_match", "chrf")

    def read(self, split: str) -> Iterator[t2t.Example]:
        o = self.options
        first, last = datetime.date(o.first_year, 1, 1), datetime.date(o.last_year, 12, 31)
        bucket = {"test": 0, "valid": 1}
        # Knuth's multiplicative hash spreads consecutive days over 20 buckets: 0 test, 1 valid.
        pool = [first + datetime.timedelta(days=i) for i in range((last - first).days + 1)
                if ((i * 2654435761) % 2**32) % 20 == bucket.get(split, -1)
                or (split == "train" and ((i * 2654435761) % 2**32) % 20 > 1)]
        rng = random.Random(f"dates/{self.seed}/{split}")
        size = {"train": o.train_size, "valid": o.valid_size, "test": o.test_size}[split]
        for i in range(size):
            d = rng.choice(pool)
            yield t2t.Example(rng.choice(_formats(d)), d.isoformat(), id=f"{split}-{i}")


@dataclasses.dataclass(frozen=True)
class ReverseOptions(DataOptions):
    train_size: int = option(5000, min=1, help="training examples generated")
    valid_size: int = option(200, min=1, help="validation examples generated")
    test_size: int = option(200, min=1, help="test examples generated")
    min_length: int = option(3, min=1, help="shortest word")
    max_length: int = option(10, min=1, help="longest word")
    alphabet: str = option("abcdefghij", help="letters words are made of")


class Reverse(t2t.Task):
    """A random word -> the same letters in reverse order."""

    name = "reverse"
    Options = ReverseOptions
    default_metrics = ("exact_match",)

    def read(self, split: str) -> Iterator[t2t.Example]:
        o = self.options
        rng = random.Random(f"reverse/{self.seed}/{split}")
        size = {"train": o.train_size, "valid": o.valid_size, "test": o.test_size}[split]
        for i in range(size):
            word = "".join(rng.choice(o.alphabet) for _ in range(rng.randint(o.min_length, o.max_length)))
            yield t2t.Example(" ".join(word), " ".join(reversed(word)), id=f"{split}-{i}")


@t2t.hookimpl
def t2t_register_tasks(register):
    register(Dates)
    register(Reverse)
