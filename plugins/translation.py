"""Translation: parallel text in any direction.

Files are found in the data folder as `{split}.{lang}` pairs (one sentence a line, aligned), or as
one file a split with a column (field) per language: `{split}.tsv`, `.csv` (header row), `.jsonl`
or `.parquet` (pyarrow, the `parquet` extra); `data.source`/`target` name the columns. Split names map through
`data.splits` (e.g. `test: test2016`).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Literal, Optional

import t2t
from t2t.data import read_parallel, read_table
from t2t.errors import DataError
from t2t.options import DataOptions, OptionError, option


@dataclasses.dataclass(frozen=True)
class TranslationOptions(DataOptions):
    source: str = option(help="source language code (file suffix, TSV column or JSON field)")
    target: str = option(help="target language code")
    format: Literal["text", "tsv", "csv", "jsonl", "parquet"] = option(
        "text", help="text: {split}.{lang} files; tsv, csv, jsonl, parquet: one file per split, a column per language")
    splits: dict[str, str] = option(factory=dict, help="file stem of each split, e.g. {test: test2016}")
    max_ratio: Optional[float] = option(None, min=1.0, help="drop training pairs whose word-length ratio exceeds this")
    min_words: int = option(1, min=1, help="drop training pairs with a side shorter than this many words")
    max_words: Optional[int] = option(None, min=1, help="drop training pairs with a side longer than this many words")

    def check(self) -> None:
        if self.source == self.target:
            raise OptionError("target", f"'{self.target}' is also the source language")
        unknown = set(self.splits) - {"train", "valid", "test"}
        if unknown:
            raise OptionError("splits", f"unknown split(s) {sorted(unknown)}; allowed: train, valid, test")


class Translation(t2t.Task):
    """Sentence pairs in `source` and `target` languages."""

    name = "translation"
    Options = TranslationOptions
    default_metrics = ("bleu", "chrf")

    def read(self, split: str) -> Iterator[t2t.Example]:
        o = self.options
        stem = o.splits.get(split, split)
        if o.format == "text":
            rows = read_parallel(self.path(f"{stem}.{o.source}"), self.path(f"{stem}.{o.target}"), self.problems)
        else:
            rows = self._rows(self.path(f"{stem}.{o.format}"))
        for _i, (src, tgt, where) in enumerate(rows):
            if split == "train" and not self._keep(src, tgt):
                continue
            yield t2t.Example(src, tgt, id=where)

    def _rows(self, path) -> Iterator[tuple[str, str, str]]:
        o = self.options
        first = True
        for where, row in read_table(path, o.format, self.problems, (o.source, o.target)):
            missing = [k for k in (o.source, o.target) if k not in row]
            if missing:
                if first and o.format in ("tsv", "csv"):
                    raise DataError(f"{path}: no column {missing[0]!r}; the header has {list(row)}")
                self.problems.report(where, f"missing field(s) {missing}")
                continue
            first = False
            src, tgt = row[o.source], row[o.target]
            if src is None or tgt is None or not str(src).strip() or not str(tgt).strip():
                self.problems.report(where, "empty source or target")
                continue
            yield str(src), str(tgt), where.replace(f"{path}:", f"{path.name}:", 1)

    def _keep(self, src: str, tgt: str) -> bool:
        o = self.options
        if o.min_words <= 1 and o.max_words is None and o.max_ratio is None:
            return True                     # a side that is not blank has a word: nothing to count
        ls, lt = len(src.split()), len(tgt.split())
        if min(ls, lt) < o.min_words or (o.max_words is not None and max(ls, lt) > o.max_words):
            return False
        return o.max_ratio is None or max(ls, lt) / max(min(ls, lt), 1) <= o.max_ratio


@t2t.hookimpl
def t2t_register_tasks(register):
    register(Translation)
