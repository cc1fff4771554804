"""Reading data files, encoding examples, and token-based batching.

Readers name the file and line of anything malformed. Batches hold up to `max_tokens` (source or
target side, padding included, whichever is larger) and are built from length-sorted buckets so
that padding stays small; their order is shuffled from a seeded generator so that it can be
replayed exactly on resume.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
from itertools import zip_longest
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from t2t.errors import DataError


class Problems:
    """Malformed input under `data.on_error`: `fail` raises at once, `skip` counts and goes on."""

    def __init__(self, policy: str = "fail"):
        self.policy = policy
        self.count = 0
        self.first: list[str] = []

    def report(self, where: str, message: str) -> None:
        text = f"{where}: {message}"
        if self.policy == "fail":
            raise DataError(text + "; fix the data, or set data.on_error: skip to skip such lines")
        self.count += 1
        if len(self.first) < 5:
            self.first.append(text)

    def summary(self) -> str:
        if not self.count:
            return ""
        return f"skipped {self.count} malformed example(s), e.g. " + "; ".join(self.first[:3])


READ_BLOCK = 1 << 22          # bytes read and decoded at once


def read_lines(path: Path, problems: Problems) -> Iterator[tuple[int, str | None]]:
    """(line number, text) for each line; text is None for a line that is not valid UTF-8.

    The file is read and decoded in blocks of whole lines (a corpus of millions of lines costs a
    fraction of a second a million), and line by line only where a block does not decode."""
    lineno = 1
    rest = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(READ_BLOCK)
            if not block:
                break
            block = rest + block
            end = block.rfind(b"\n")
            if end < 0:
                rest = block
                continue
            block, rest = block[: end + 1], block[end + 1:]
            lines = _decode_lines(block, path, lineno, problems)
            yield from zip(itertools.count(lineno), lines)
            lineno += len(lines)
        if rest:
            yield from zip(itertools.count(lineno), _decode_lines(rest + b"\n", path, lineno, problems))


def _decode_lines(block: bytes, path: Path, first: int, problems: Problems) -> list[str | None]:
    """The lines of a block that ends with a newline, without their line ends."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        out = []
        for lineno, raw in enumerate(block.split(b"\n")[:-1], first):
            try:
                out.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as e:
                problems.report(f"{path}:{lineno}", f"not valid UTF-8 (byte {e.start} of the line)")
                out.append(None)
        return out
    lines = text.split("\n")[:-1]
    return [line.rstrip("\r") for line in lines] if "\r" in text else lines


def read_parallel(src_path: Path, tgt_path: Path, problems: Problems) -> Iterator[tuple[str, str, str]]:
    """Aligned lines of two files as (source, target, 'file:line'); a count mismatch is an error."""
    n_src = n_tgt = 0
    name = src_path.name
    for a, b in zip_longest(read_lines(src_path, problems), read_lines(tgt_path, problems)):
        if a is None or b is None:
            n_src += a is not None
            n_tgt += b is not None
            continue
        n_src += 1
        n_tgt += 1
        (lineno, s), (_, t) = a, b
        if s is None or t is None:
            continue
        if not s.strip() or not t.strip():
            problems.report(f"{src_path if not s.strip() else tgt_path}:{lineno}", "empty line")
            continue
        yield s, t, f"{name}:{lineno}"
    if n_src != n_tgt:
        longer = src_path if n_src > n_tgt else tgt_path
        raise DataError(f"{longer}:{min(n_src, n_tgt) + 1}: {src_path.name} has {n_src} lines but {tgt_path.name} "
                        f"has {n_tgt}; the files of a parallel corpus must align line by line")


def read_jsonl(path: Path, problems: Problems) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON Lines file."""
    for lineno, text in read_lines(path, problems):
        if text is None or not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            problems.report(f"{path}:{lineno}", f"not valid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            problems.report(f"{path}:{lineno}", f"expected a JSON object, got {type(obj).__name__}")
            continue
        yield lineno, obj


def read_tsv(path: Path, problems: Problems, header: bool = True) -> Iterator[tuple[int, dict | list]]:
    """(line number, row) of a tab-separated file; rows are dicts when the file has a header."""
    names = None
    for lineno, text in read_lines(path, problems):
        if text is None or not text.strip():
            continue
        row = next(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
        if header and names is None:
            names = row
            continue
        if names is not None:
            if len(row) != len(names):
                problems.report(f"{path}:{lineno}", f"{len(row)} fields, but the header has {len(names)}")
                continue
            yield lineno, dict(zip(names, row))
        else:
            yield lineno, row


def read_csv(path: Path, problems: Problems) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a comma-separated file with a header row (RFC 4180: quoted fields
    may hold commas, quotes and line breaks; the line is where a row starts)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            names, start = None, 1
            for row in reader:
                lineno, start = start, reader.line_num + 1
                if not row or not any(field.strip() for field in row):
                    continue
                if names is None:
                    names = row
                    continue
                if len(row) != len(names):
                    problems.report(f"{path}:{lineno}", f"{len(row)} fields, but the header has {len(names)}")
                    continue
                yield lineno, dict(zip(names, row))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text near byte {e.start}; save the file as UTF-8") from None
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None


def read_parquet(path: Path, columns: Sequence[str], optional: Sequence[str] = (),
                 batch_rows: int = 8192) -> Iterator[tuple[int, dict]]:
    """(row number from 1, row) of a Parquet file, reading only `columns` (which must be there) and
    those of `optional` that are, a batch of rows at a time (pyarrow, the `parquet` extra)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install 't2t[parquet]'") from None
    import pyarrow as pa
    try:
        table = pq.ParquetFile(path)
        have = table.schema_arrow.names
        missing = [c for c in columns if c not in have]
        if missing:
            raise DataError(f"{path}: no column {missing[0]!r}; the file has {have}")
        n = 0
        wanted = list(dict.fromkeys([*columns, *(c for c in optional if c in have)]))
        for batch in table.iter_batches(batch_size=batch_rows, columns=wanted):
            for row in batch.to_pylist():
                n += 1
                yield n, row
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None


def read_table(path: Path, fmt: str, problems: Problems, columns: Sequence[str],
               optional: Sequence[str] = ()) -> Iterator[tuple[str, dict]]:
    """(where, row) of one file of a table format: `path:line` for text formats, `path:row N` for
    Parquet; `columns` and `optional` are the ones the caller reads (Parquet reads only those)."""
    if fmt == "parquet":
        for n, row in read_parquet(path, columns, optional):
            yield f"{path}:row {n}", row
        return
    reader = {"tsv": read_tsv, "csv": read_csv, "jsonl": read_jsonl}[fmt]
    for lineno, row in reader(path, problems):
        yield f"{path}:{lineno}", row


# --------------------------------------------------------------------------- batches


def batch_indices(lengths, max_tokens: int, max_sentences: int | None = None,
                  shuffle: bool = False, seed: int = 0) -> list[np.ndarray]:
    """Group example indices into batches of at most `max_tokens` padded tokens per side.

    `lengths` is (N, 2): source and target lengths; the target length counts the extra <s>/</s>.
    Examples are sorted by length (ties broken randomly when shuffling) and cut greedily; with
    `shuffle` the order of the batches is then permuted. The result depends only on the inputs and
    `seed` (Python's `random` draws the permutations, so a seed gives the batches it always gave).
    """
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1, 2)
    n = len(lengths)
    rng = random.Random(seed)
    if shuffle:
        order = list(range(n))
        rng.shuffle(order)
        order = np.array(order, dtype=np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    if n:           # stable sort by (source, target): shuffled ties stay shuffled
        key = lengths[order, 0] * (int(lengths[:, 1].max()) + 1) + lengths[order, 1]
        order = order[np.argsort(key, kind="stable")]
    size = np.maximum(lengths[order, 0], lengths[order, 1] + 1)
    cap = max_sentences or n
    batches, i = [], 0
    while i < n:
        # a batch grows while (its longest) x (its count) fits; that product only grows, so the
        # first item that does not fit ends it; no batch is longer than max_tokens // size[i] + 1
        most = min(n - i, cap, max_tokens // max(int(size[i]), 1) + 1)
        longest = np.maximum.accumulate(size[i: i + most])
        fits = longest[1:] * np.arange(2, most + 1) <= max_tokens
        k = most if fits.all() else 1 + int(fits.argmin())
        batches.append(order[i: i + k])
        i += k
    if shuffle:
        rng.shuffle(batches)
    return batches


@dataclass
class Batch:
    """Padded tensors for one batch.

    src: (B, S) ids or (B, S, F) features; src_lengths: (B,); tgt_in: (B, T) starting with <s>;
    tgt_out: (B, T) ending with </s>, padded with <pad>; index: positions in the split.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor | None
    tgt_out: torch.Tensor | None
    index: list[int]

    def to(self, device) -> "Batch":
        def move(t):
            return None if t is None else t.to(device, non_blocking=True)
        return Batch(move(self.src), move(self.src_lengths), move(self.tgt_in), move(self.tgt_out), self.index)

    @property
    def target_tokens(self) -> int:
        return int((self.tgt_out != 0).sum()) if self.tgt_out is not None else 0

    def __len__(self) -> int:
        return len(self.index)


def padding_ratio(batches: Sequence[np.ndarray], lengths) -> float:
    """Share of padded positions (both sides) over a list of index batches."""
    if not batches:
        return 0.0
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1, 2)
    flat = np.concatenate(batches)
    starts = np.cumsum([0] + [len(b) for b in batches[:-1]])
    src, tgt = lengths[flat, 0], lengths[flat, 1] + 1
    counts = np.diff(np.append(starts, len(flat)))
    real = int(src.sum() + tgt.sum())
    padded = int((counts * (np.maximum.reduceat(src, starts) + np.maximum.reduceat(tgt, starts))).sum())
    return 1.0 - real / padded if padded else 0.0
