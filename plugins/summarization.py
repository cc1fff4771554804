"""Summarization: document -> summary pairs from JSON Lines, a JSON array, TSV, CSV or Parquet.

Field names come from the recipe; list-valued source fields are joined, list-valued target fields
give several references (the first is the training target). Long sources are cut to
`max_source_words` with a count. Baselines for `t2t evaluate --baseline`: `lead` (the first
`lead_n` sentences or lines of the source) and `longest` (its `lead_n` longest lines, in order:
the "longest-3" baseline of dialogue summarization).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from typing import Any, Iterator, Literal, Optional

import t2t
from t2t.data import read_table
from t2t.errors import DataError
from t2t.options import DataOptions, option

log = logging.getLogger("t2t")
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(\[]?[A-Z0-9])")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SummarizationOptions(DataOptions):
    format: Literal["jsonl", "json", "tsv", "csv", "parquet"] = option(
        "jsonl", help="jsonl: one object a line; json: one array; tsv, csv: a header row; parquet: columns (pyarrow)")
    source: str = option("document", help="field holding the document (a string or a list of strings)")
    target: str = option("summary", help="field holding the summary (a string, or a list: the first trains)")
    references: tuple[str, ...] = option((), help="fields holding evaluation references (default: the target)")
    splits: dict[str, str] = option(factory=dict, help="file stem of each split, e.g. {valid: dev}")
    join: str = option(" ", help="joins the items of a list-valued source")
    newline: str = option(" ", help="replaces line breaks in the source the model reads")
    max_source_words: Optional[int] = option(None, min=1, help="cut sources to their first N words")
    lead_n: int = option(3, min=1, help="sentences or lines the lead/longest baselines take")
    lead_unit: Literal["sentence", "line"] = option("sentence", help="what the lead baseline counts")
    min_target_coverage: float = option(0.0, min=0.0, max=1.0,
                                        help="drop training pairs whose target has under this fraction of its "
                                             "words in the (cut) source; evaluation splits keep every example")


class Summarization(t2t.Task):
    """Documents (emails, dialogues, abstracts ...) -> summaries, scored with ROUGE."""

    name = "summarization"
    Options = SummarizationOptions
    default_metrics = ("rouge",)
    baselines = ("lead", "longest")

    def read(self, split: str) -> Iterator[t2t.Example]:
        o = self.options
        stem = o.splits.get(split, split)
        path = self.path(f"{stem}.{o.format}")
        cut = 0
        for where, row in self._rows(path):
            raw = _text(row.get(o.source), o.join)
            refs = tuple(r for f in o.references for r in _texts(row.get(f)))
            targets = _texts(row.get(o.target)) or list(refs)      # a test split may hold references only
            if not raw or not raw.strip() or not targets:
                self.problems.report(where, f"empty or missing '{o.source}' or '{o.target}'")
                continue
            refs = refs or tuple(targets)
            source = " ".join(raw.split()) if o.newline == " " else o.newline.join(
                " ".join(line.split()) for line in raw.splitlines() if line.strip())
            if o.max_source_words is not None:
                words = source.split(" ")
                if len(words) > o.max_source_words:
                    source, cut = " ".join(words[: o.max_source_words]), cut + 1
            yield t2t.Example(source, targets[0], refs, id=str(row.get("id", row.get("fname", where))),
                              raw=raw)
        if cut:
            log.info(f"{path}: {cut} source(s) cut to data.max_source_words = {o.max_source_words}")

    def stream(self, split: str) -> Iterator[t2t.Example]:
        floor = self.options.min_target_coverage
        if split != "train" or not floor:
            yield from super().stream(split)
            return
        seen = kept = 0
        for ex in super().stream(split):
            seen += 1
            if target_coverage(ex.source, ex.target) >= floor:
                kept += 1
                yield ex
        if not kept:
            raise DataError(f"data.min_target_coverage: {floor} drops every one of the {seen} training pairs")
        log.info(f"data.min_target_coverage = {floor}: kept {kept} of {seen} training pairs "
                 f"({seen - kept} targets mostly not in their source)")

    def _rows(self, path) -> Iterator[tuple[str, dict]]:
        o = self.options
        if o.format != "json":
            yield from read_table(path, o.format, self.problems, (o.source,),
                                  optional=(o.target, *o.references, "id", "fname"))
        else:
            try:
                rows = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DataError(f"{path}: not a valid UTF-8 JSON file ({e})") from None
            if not isinstance(rows, list):
                raise DataError(f"{path}: expected a JSON array of objects, got {type(rows).__name__}")
            for i, row in enumerate(rows):
                if not isinstance(row, dict):
                    self.problems.report(f"{path}[{i}]", "not a JSON object")
                    continue
                yield f"{path}[{i}]", row

    def baseline(self, name: str, examples: list[t2t.Example]) -> list[str]:
        return [self._baseline(name, ex) for ex in examples]

    def _baseline(self, name: str, example: t2t.Example) -> str:
        units = _units(example.raw or example.source, self.options.lead_unit if name == "lead" else "line")
        n = self.options.lead_n
        if name == "lead":
            return " ".join(units[:n])
        keep = sorted(sorted(range(len(units)), key=lambda i: -len(units[i]))[:n])
        return " ".join(units[i] for i in keep)


def target_coverage(source: str, target: str) -> float:
    """The fraction of the target's words (lower-cased letter and digit runs, as ROUGE counts them)
    that occur in the source: low where a reference says what its source does not."""
    words = _WORD.findall(target.lower())
    if not words:
        return 0.0
    seen = set(_WORD.findall(source.lower()))
    return sum(w in seen for w in words) / len(words)


def _text(value: Any, join: str) -> str | None:
    if isinstance(value, list):
        return join.join(str(v) for v in value)
    return None if value is None else str(value)


def _texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def _units(text: str, unit: str) -> list[str]:
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    if unit == "line":
        return lines
    return [s for line in lines for s in _SENTENCE_END.split(line) if s.strip()]


@t2t.hookimpl
def t2t_register_tasks(register):
    register(Summarization)
