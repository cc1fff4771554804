"""Reading data files, encoding examples, and token-based batching.

Readers name the file and line of anything malformed. Batches hold up to `max_tokens` (source or
target side, padding included, whichever is larger) and are built from length-sorted buckets so
that padding stays small; their order is shuffled from a seeded generator so that it can be
replayed exactly on resume.
"""

from __future__ import annotations

import csv
import io
import json
import random
from itertools import zip_longest
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

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


def read_lines(path: Path, problems: Problems) -> Iterator[tuple[int, str | None]]:
    """(line number, text) for each line; text is None for a line that is not valid UTF-8."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.report(f"{path}:{lineno}", f"not valid UTF-8 (byte {e.start} of the line)")
                yield lineno, None
                continue
            yield lineno, text.rstrip("\r\n")


def read_parallel(src_path: Path, tgt_path: Path, problems: Problems) -> Iterator[tuple[str, str, str]]:
    """Aligned lines of two files as (source, target, 'file:line'); a count mismatch is an error."""
    n_src = n_tgt = 0
    for a, b in zip_longest(read_lines(src_path, problems), read_lines(tgt_path, problems)):
        n_src += a is not None
        n_tgt += b is not None
        if a is None or b is None or a[1] is None or b[1] is None:
            continue
        (lineno, s), (_, t) = a, b
        if not s.strip() or not t.strip():
            problems.report(f"{src_path if not s.strip() else tgt_path}:{lineno}", "empty line")
            continue
        yield s, t, f"{src_path.name}:{lineno}"
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


# --------------------------------------------------------------------------- encoded examples


@dataclass
class Encoded:
    """An example as ids: `src` is a list of ids or a (frames, features) tensor."""

    src: Any
    tgt: list[int]
    index: int            # position in the split (to restore order and find references)

    @property
    def src_len(self) -> int:
        return len(self.src)


def encode_examples(examples: Sequence, encode_source: Callable[[Any], Any], encode_target: Callable[[str], list[int]],
                    max_source_len: int | None = None, max_target_len: int | None = None,
                    overlong: str = "filter") -> tuple[list[Encoded], dict[str, int]]:
    """Encode every example; drop or cut those over the limits. Returns (items, counts)."""
    items, counts = [], {"filtered": 0, "truncated": 0, "empty": 0}
    for i, ex in enumerate(examples):
        src, tgt = encode_source(ex.source), encode_target(ex.target)
        if len(src) == 0 or len(tgt) == 0:
            counts["empty"] += 1
            continue
        too_long = (max_source_len is not None and len(src) > max_source_len) or \
                   (max_target_len is not None and len(tgt) > max_target_len)
        if too_long:
            if overlong == "filter":
                counts["filtered"] += 1
                continue
            counts["truncated"] += 1
            src, tgt = src[:max_source_len], tgt[:max_target_len]
        items.append(Encoded(src, tgt, i))
    return items, counts


def batch_indices(lengths: Sequence[tuple[int, int]], max_tokens: int, max_sentences: int | None = None,
                  shuffle: bool = False, seed: int = 0) -> list[list[int]]:
    """Group example indices into batches of at most `max_tokens` padded tokens per side.

    `lengths` are (source, target) lengths; the target length counts the extra <s>/</s>. Examples
    are sorted by length (ties broken randomly when shuffling) and cut greedily; with `shuffle`
    the order of the batches is then permuted. The result depends only on the inputs and `seed`.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: (lengths[i][0], lengths[i][1]))   # stable: shuffled ties stay shuffled
    batches, current, longest = [], [], 0
    for i in order:
        size = max(lengths[i][0], lengths[i][1] + 1)
        grown = max(longest, size)
        full = current and (grown * (len(current) + 1) > max_tokens or
                            (max_sentences is not None and len(current) >= max_sentences))
        if full:
            batches.append(current)
            current, grown = [], size
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
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
        move = (lambda t: None if t is None else t.to(device, non_blocking=True))
        return Batch(move(self.src), move(self.src_lengths), move(self.tgt_in), move(self.tgt_out), self.index)

    @property
    def target_tokens(self) -> int:
        return int((self.tgt_out != 0).sum()) if self.tgt_out is not None else 0

    def __len__(self) -> int:
        return len(self.index)


def collate(items: Sequence[Encoded], pad: int, bos: int, eos: int, with_target: bool = True) -> Batch:
    """Pad a list of encoded examples into a Batch."""
    lengths = torch.tensor([it.src_len for it in items], dtype=torch.long)
    if isinstance(items[0].src, torch.Tensor):
        feat = items[0].src.shape[-1]
        src = torch.zeros(len(items), int(lengths.max()), feat, dtype=items[0].src.dtype)
        for b, it in enumerate(items):
            src[b, : it.src_len] = it.src
    else:
        src = torch.full((len(items), int(lengths.max())), pad, dtype=torch.long)
        for b, it in enumerate(items):
            src[b, : it.src_len] = torch.as_tensor(it.src, dtype=torch.long)
    tgt_in = tgt_out = None
    if with_target:
        t = max(len(it.tgt) for it in items) + 1
        tgt_in = torch.full((len(items), t), pad, dtype=torch.long)
        tgt_out = torch.full((len(items), t), pad, dtype=torch.long)
        for b, it in enumerate(items):
            ids = torch.as_tensor(it.tgt, dtype=torch.long)
            tgt_in[b, 0] = bos
            tgt_in[b, 1: len(ids) + 1] = ids
            tgt_out[b, : len(ids)] = ids
            tgt_out[b, len(ids)] = eos
    return Batch(src, lengths, tgt_in, tgt_out, [it.index for it in items])


def padding_ratio(batches: Sequence[Sequence[int]], lengths: Sequence[tuple[int, int]]) -> float:
    """Share of padded positions (both sides) over a list of index batches."""
    real = padded = 0
    for b in batches:
        s = [lengths[i][0] for i in b]
        t = [lengths[i][1] + 1 for i in b]
        real += sum(s) + sum(t)
        padded += len(b) * (max(s) + max(t))
    return 1.0 - real / padded if padded else 0.0
