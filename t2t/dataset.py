"""Prepared datasets: a split's encoded examples as flat arrays, made once, memory-mapped, and
shared by training, resume, evaluation and every worker of every node.

A prepared split is a folder `{root}/{split}-{key}` (the key: a hash of the task, its options, the
data files' sizes and times, the tokenizer, the length limits) holding

    src.bin        every kept example's source ids one after another (uint16 where the
                   vocabulary fits, else int32), or its feature frames (float32, frames x F)
    tgt.bin        the target ids likewise
    lengths.bin    int32 (N, 2): source and target length of each example
    offsets.bin    int64 (N, 2): where each example starts in src.bin and tgt.bin
    positions.bin  int64 (N,): each example's position in the split (to find its references)
    task_state.pt  what the task learnt from the split (e.g. speech CMVN statistics)
    manifest.json  the key and what made it, counts, dtypes and shapes, each file's sha256

It is written into a temporary folder beside it, the manifest last, and renamed into place; the
checksums are verified when it is opened. A builder holds a lock file that it touches as it goes,
so another process (or node, on a shared folder) waits for it instead of building the same thing;
a lock whose process has ended (or, from another machine, that nobody touched for two minutes)
is taken over.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from t2t import checkpoint as ckpt
from t2t.data import Batch
from t2t.errors import DataError
from t2t.options import to_plain

log = logging.getLogger("t2t")

FORMAT = "t2t-prepared"
VERSION = 1
CHUNK = 20_000                    # examples encoded at a time
STALE_LOCK_S = 120.0              # a lock untouched this long belongs to a builder that died
_ARRAYS = ("src", "tgt", "lengths", "offsets", "positions")


# --------------------------------------------------------------------------- a split's arrays


@dataclass
class Split:
    """Encoded examples of one split as arrays (memory-mapped when prepared on disk).

    lengths: (N, 2) int32 source and target lengths, held in memory (8 bytes an example);
    src, tgt: flat ids (or frames, (frames, F)); offsets: (N, 2); positions: (N,)."""

    src: np.ndarray
    tgt: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray
    positions: np.ndarray
    counts: dict = field(default_factory=dict)
    task_state: dict = field(default_factory=dict)
    folder: Path | None = None
    problems: str = ""                 # malformed examples met while preparing (a summary)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def features(self) -> bool:
        return self.src.ndim == 2

    def source(self, i: int) -> np.ndarray:
        o, n = int(self.offsets[i, 0]), int(self.lengths[i, 0])
        return np.asarray(self.src[o: o + n])

    def target(self, i: int) -> np.ndarray:
        o, n = int(self.offsets[i, 1]), int(self.lengths[i, 1])
        return np.asarray(self.tgt[o: o + n])

    def target_tokens(self, indices) -> int:
        """Target tokens of these examples, </s> included (what the loss is summed over)."""
        idx = np.asarray(indices, dtype=np.int64)
        return int(self.lengths[idx, 1].sum()) + len(idx)

    def collate(self, indices, pad: int, bos: int, eos: int, with_target: bool = True) -> Batch:
        """Padded tensors of the examples at `indices` (a Batch: src (B, S[, F]), targets (B, T))."""
        idx = np.asarray(indices, dtype=np.int64)
        src_len = self.lengths[idx, 0].astype(np.int64)
        values, mask = _gather(self.src, self.offsets[idx, 0], src_len)
        if self.features:
            values[~mask] = 0
            src = torch.from_numpy(np.ascontiguousarray(values))
        else:
            src = torch.from_numpy(np.where(mask, values, pad).astype(np.int64))
        tgt_in = tgt_out = None
        if with_target:
            tgt_len = self.lengths[idx, 1].astype(np.int64)
            ids, m = _gather(self.tgt, self.offsets[idx, 1], tgt_len, extra=1)
            ids = np.where(m, ids, pad).astype(np.int64)
            out = ids.copy()
            out[np.arange(len(idx)), tgt_len] = eos
            inp = np.empty_like(ids)
            inp[:, 0] = bos
            inp[:, 1:] = ids[:, :-1]
            tgt_in, tgt_out = torch.from_numpy(inp), torch.from_numpy(out)
        return Batch(src, torch.from_numpy(src_len), tgt_in, tgt_out, self.positions[idx].tolist())


def _gather(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, extra: int = 0):
    """(B, L + extra[, F]) rows of `flat` starting at `starts`, and the mask of real positions."""
    width = int(lengths.max()) + extra if len(lengths) else extra
    steps = np.arange(width)
    mask = steps[None, :] < lengths[:, None]
    where = np.where(mask, starts[:, None] + steps[None, :], 0)
    values = flat[where] if len(flat) else np.zeros(where.shape + flat.shape[1:], dtype=flat.dtype)
    return np.asarray(values), mask


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Encoder:
    """How a split's examples become ids: the source side (ids, or frames for feature tasks)
    and the target side, and the limits a training split is filtered or cut to."""

    encode_sources: Callable[[list], list]          # sources -> list of id lists or (frames, F) tensors
    encode_targets: Callable[[list[str]], list[list[int]]]
    max_source_len: int | None = None
    max_target_len: int | None = None
    overlong: str = "filter"                        # or "truncate"
    vocab_size: int = 0

    def describe(self) -> dict:
        return {"max_source_len": self.max_source_len, "max_target_len": self.max_target_len,
                "overlong": self.overlong}


class _Writer:
    """Collects encoded chunks into files (a folder) or into memory (None)."""

    def __init__(self, folder: Path | None, id_dtype):
        self.folder, self.id_dtype = folder, id_dtype
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in _ARRAYS}
        self.files = {name: open(folder / f"{name}.bin", "wb") for name in _ARRAYS} if folder else {}
        self.hashes = {name: hashlib.sha256() for name in _ARRAYS}
        self.shapes = {name: [0] for name in _ARRAYS}
        self.dtypes: dict[str, str] = {}
        self.counts = {"read": 0, "kept": 0, "filtered": 0, "truncated": 0, "empty": 0}

    def write(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self.dtypes.setdefault(name, array.dtype.str)
        self.shapes[name] = [self.shapes[name][0] + len(array), *array.shape[1:]]
        if self.folder is None:
            self.parts[name].append(array)
            return
        data = array.tobytes()
        self.hashes[name].update(data)
        try:
            self.files[name].write(data)
        except OSError as e:
            raise DataError(f"{self.folder / (name + '.bin')}: cannot write the prepared data ({e.strerror}); "
                            f"free space there or set data.prepared_dir elsewhere") from None

    def add(self, sources: list, targets: list[list[int]], first: int, enc: Encoder) -> None:
        """Filter or cut one chunk of encoded examples (as training does) and write what is kept."""
        n = len(targets)
        src_len = np.fromiter((len(s) for s in sources), np.int64, n)
        tgt_len = np.fromiter((len(t) for t in targets), np.int64, n)
        empty = (src_len == 0) | (tgt_len == 0)
        over = np.zeros(n, bool)
        if enc.max_source_len is not None:
            over |= src_len > enc.max_source_len
        if enc.max_target_len is not None:
            over |= tgt_len > enc.max_target_len
        over &= ~empty
        keep = ~empty & ~over if enc.overlong == "filter" else ~empty
        self.counts["read"] += n
        self.counts["empty"] += int(empty.sum())
        self.counts["filtered" if enc.overlong == "filter" else "truncated"] += int(over.sum())
        if enc.overlong != "filter":
            if enc.max_source_len is not None:
                src_len = np.minimum(src_len, enc.max_source_len)
            if enc.max_target_len is not None:
                tgt_len = np.minimum(tgt_len, enc.max_target_len)
        kept = np.flatnonzero(keep)
        self.counts["kept"] += len(kept)
        self.append([sources[i] for i in kept], [targets[i] for i in kept], src_len[kept], tgt_len[kept], kept + first)

    def append(self, sources: list, targets: list, src_len: np.ndarray, tgt_len: np.ndarray,
               positions: np.ndarray) -> None:
        """Write examples as they are, cut to the lengths given."""
        if not len(src_len):
            return
        starts = np.stack([np.cumsum(src_len) - src_len + self.shapes["src"][0],      # after what is written
                           np.cumsum(tgt_len) - tgt_len + self.shapes["tgt"][0]], 1)
        self.write("src", _flatten(sources, src_len, self.id_dtype))
        self.write("tgt", _flatten(targets, tgt_len, self.id_dtype))
        self.write("lengths", np.stack([src_len, tgt_len], 1).astype(np.int32).reshape(-1, 2))
        self.write("offsets", starts.astype(np.int64).reshape(-1, 2))
        self.write("positions", np.asarray(positions, dtype=np.int64))

    def finish(self) -> dict:
        """Close the files; the manifest's part describing the arrays."""
        for name in _ARRAYS:
            if name not in self.dtypes:               # no example at all: typed empty arrays
                self.write(name, np.zeros((0, *_EMPTY_TAIL.get(name, ())), dtype=_EMPTY_DTYPE.get(name, self.id_dtype)))
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        return {name: {"dtype": self.dtypes[name], "shape": self.shapes[name],
                       **({"sha256": self.hashes[name].hexdigest()} if self.folder else {})} for name in _ARRAYS}

    def in_memory(self) -> Split:
        arrays = {}
        for name in _ARRAYS:
            parts = self.parts[name]
            arrays[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return Split(**arrays, counts=dict(self.counts))


_EMPTY_TAIL = {"lengths": (2,), "offsets": (2,)}
_EMPTY_DTYPE = {"lengths": np.int32, "offsets": np.int64, "positions": np.int64}


def _flatten(seqs: list, lengths: np.ndarray, id_dtype) -> np.ndarray:
    """One array of the sequences cut to `lengths`: ids -> (tokens,), frames -> (frames, F)."""
    if seqs and isinstance(seqs[0], torch.Tensor):
        return torch.cat([s[:n] for s, n in zip(seqs, lengths.tolist())]).numpy()
    cut = (s if len(s) == n else s[:n] for s, n in zip(seqs, lengths.tolist()))
    return np.fromiter(itertools.chain.from_iterable(cut), id_dtype, int(lengths.sum()))


def id_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


def encode(examples: Iterable, enc: Encoder, writer: _Writer, progress: Callable[[int], None] = lambda n: None) -> None:
    """Encode a stream of examples chunk by chunk into `writer`. The next chunk is read while the
    tokenizer encodes this one (a threaded encoder such as SentencePiece's runs without the GIL)."""
    it = iter(examples)

    def encoded(chunk):
        return enc.encode_sources([ex.source for ex in chunk]), enc.encode_targets([ex.target for ex in chunk])

    with ThreadPoolExecutor(1) as pool:
        chunk = list(itertools.islice(it, CHUNK))
        pending = pool.submit(encoded, chunk) if chunk else None
        first = 0
        while chunk:
            following = list(itertools.islice(it, CHUNK))
            sources, targets = pending.result()
            if following:                  # encoding the next chunk goes on while this one is written
                pending = pool.submit(encoded, following)
            writer.add(sources, targets, first, enc)
            first += len(chunk)
            progress(len(chunk))
            chunk = following


def from_encoded(sources: list, targets: list | None = None) -> Split:
    """An in-memory split of already encoded sources (and targets), nothing filtered: what
    decoding batches its inputs from."""
    targets = targets if targets is not None else [[] for _ in sources]
    writer = _Writer(None, np.int64)
    def lengths(seqs):
        return np.fromiter((len(x) for x in seqs), np.int64, len(seqs))
    writer.append(sources, targets, lengths(sources), lengths(targets), np.arange(len(sources)))
    writer.finish()
    return writer.in_memory()


def encode_in_memory(examples: Iterable, enc: Encoder) -> Split:
    """A split encoded into memory (evaluation and validation sets, decoding inputs)."""
    writer = _Writer(None, id_dtype(enc.vocab_size))
    encode(examples, enc, writer)
    writer.finish()
    return writer.in_memory()


# --------------------------------------------------------------------------- keys


def digest(value: Any) -> str:
    """sha256 of nested plain data and tensors, independent of dict order."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=str):
                feed(str(k))
                feed(v[k])
            h.update(b"}")
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for x in v:
                feed(x)
            h.update(b"]")
        else:
            h.update(f"{type(v).__name__}:{v!r};".encode())
    feed(value)
    return h.hexdigest()


def fingerprint(folder: Path | None, skip: Path | None = None, most: int = 200_000) -> list:
    """(relative path, size, mtime in ns) of every file under a data folder: a changed, added or
    removed file changes the key. Hidden entries and the prepared-data folder are passed over; linked
    folders are followed (audio linked into a data folder is data), each real folder once."""
    if folder is None or not folder.exists():
        return []
    skip = skip.resolve() if skip is not None else None
    out, seen = [], {Path(folder).resolve()}

    def keep(root, d):
        real = Path(root, d).resolve()
        if d.startswith(".") or real == skip or real in seen:
            return False
        seen.add(real)
        return True

    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if keep(root, d))
        for name in sorted(files):
            if name.startswith("."):
                continue
            st = os.stat(os.path.join(root, name))
            out.append((os.path.relpath(os.path.join(root, name), folder), st.st_size, st.st_mtime_ns))
            if len(out) >= most:
                return out
    return out


# --------------------------------------------------------------------------- the store


def cache_root() -> Path:
    """Where prepared data and trained tokenizers are kept by default, shared by every run of the
    same data and options: $T2T_CACHE/prepared, else $XDG_CACHE_HOME/t2t/prepared, else
    ~/.cache/t2t/prepared."""
    if os.environ.get("T2T_CACHE"):
        return Path(os.path.expanduser(os.environ["T2T_CACHE"])) / "prepared"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "t2t" / "prepared"


def cache_entries(root: Path) -> list[dict]:
    """What a prepared-data folder holds: each split or tokenizer file with its size, when it was
    last used and, for splits, its counts; newest use first."""
    out = []
    for entry in sorted(Path(root).glob("*")) if Path(root).is_dir() else []:
        if entry.name.startswith("."):
            continue
        files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
        info = {"name": entry.name, "path": str(entry), "bytes": sum(f.stat().st_size for f in files),
                "used": max((f.stat().st_atime for f in files), default=entry.stat().st_mtime),
                "kind": "tokenizers" if entry.name.startswith("tokenizers-") else "split"}
        manifest = entry / "manifest.json"
        if manifest.exists():
            with contextlib.suppress(OSError, ValueError):
                m = json.loads(manifest.read_text(encoding="utf-8"))
                info.update(split=m.get("split"), examples=m.get("counts", {}).get("kept"))
        out.append(info)
    return sorted(out, key=lambda e: -e["used"])


def cache_clear(root: Path, names: Sequence[str] = ()) -> list[str]:
    """Delete prepared splits and tokenizer files (those named, else all) that no process is
    building now; returns what was deleted."""
    gone = []
    for entry in cache_entries(root):
        if names and entry["name"] not in names:
            continue
        path = Path(entry["path"])
        lock = path.with_name(f".{path.name}.lock")
        if lock.exists() and not _lock_owner_gone(lock):
            log.warning(f"{path}: being prepared by another process now; left as it is")
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        gone.append(entry["name"])
    unknown = [n for n in names if n not in gone and not (Path(root) / n).exists()]
    if unknown:
        raise DataError(f"{root}: no entry {unknown[0]!r}; see `t2t cache list`")
    return gone


class Store:
    """The prepared splits and trained tokenizers of one recipe's data, under `root`."""

    def __init__(self, root: Path, task, recipe):
        self.root, self.task = Path(root), task
        options = {k: v for k, v in to_plain(recipe.data).items() if k != "prepared_dir"}
        self.base = {"format": FORMAT, "version": VERSION, "task": recipe.task, "data": options,
                     "seed": recipe.seed, "source_kind": task.source_kind,
                     "files": fingerprint(task.data_dir, skip=self.root)}
        others = task.other_data_folders()
        if others:          # only then, so that the keys of data prepared before this stay as they were
            self.base["other_files"] = {str(f): fingerprint(f, skip=self.root) for f in others}
        self.tokenizer_options = to_plain(recipe.tokenizer)

    @classmethod
    def for_recipe(cls, recipe, task) -> "Store":
        root = recipe.data.prepared_dir or cache_root()
        return cls(Path(os.path.expanduser(root)), task, recipe)

    # ------------------------------------------------------------------ tokenizers
    def tokenizers_path(self) -> Path:
        key = digest({**self.base, "tokenizer": self.tokenizer_options,
                      "symbols": list(self.task.special_tokens)})
        return self.root / f"tokenizers-{key[:20]}.pt"

    def tokenizers(self, train: Callable[[], dict]) -> dict:
        """The tokenizer states trained on this data with these options: made by `train()` once,
        then reused by every run that shares the folder."""
        path = self.tokenizers_path()
        if path.exists():
            try:
                states = ckpt.load(path)["tokenizers"]
                log.info(f"tokenizers: reusing {path}")
                return states
            except Exception as e:          # a cache: whatever is wrong with it, make it again
                log.warning(f"{path}: unreadable ({str(e).splitlines()[0][:300]}); training the tokenizers again")
        states = train()
        ckpt.save(path, {"tokenizers": states})
        return states

    # ------------------------------------------------------------------ splits
    def split_key(self, split: str, tokenizers: dict, enc: Encoder) -> str:
        return digest({**self.base, "split": split, "tokenizers": digest(tokenizers), "limits": enc.describe()})[:20]

    def split(self, split: str, examples: Callable[[], Iterable], enc: Encoder, tokenizers: dict,
              build: bool = True) -> Split:
        """The prepared split, built first when missing (by this process if `build`, else waiting
        for the process that builds it)."""
        folder = self.root / f"{split}-{self.split_key(split, tokenizers, enc)}"
        if not (folder / "manifest.json").exists():
            if build:
                _build_locked(folder, examples, enc, self.task, split)
            else:
                _wait_for(folder)
        return open_split(folder)


def _lock_owner_gone(lock: Path) -> bool:
    """Whether a lock's builder is gone: on this machine, its process has ended; elsewhere, it has
    not touched the lock for STALE_LOCK_S (a live builder touches it every few seconds)."""
    try:
        text = lock.read_text()
        age = time.time() - lock.stat().st_mtime
    except OSError:                        # removed meanwhile
        return True
    try:
        host, pid = text.split(":")
    except ValueError:                     # its owner is writing it this instant
        return age > STALE_LOCK_S
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
            return False
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
    return age > STALE_LOCK_S


@contextlib.contextmanager
def _lock(folder: Path):
    """Hold `.{name}.lock` beside the folder, touched every few seconds while held; yields False
    when another process finished the folder while this one waited."""
    lock = folder.with_name(f".{folder.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()}:{os.getpid()}"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, me.encode())
            os.close(fd)
            break
        except FileExistsError:
            if (folder / "manifest.json").exists():
                yield False
                return
            if _lock_owner_gone(lock):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            time.sleep(1.0)
    done = threading.Event()

    def touch():
        while not done.wait(STALE_LOCK_S / 12):
            with contextlib.suppress(OSError):
                os.utime(lock)
    beat = threading.Thread(target=touch, daemon=True)
    beat.start()
    try:
        yield True
    finally:
        done.set()
        beat.join()
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _wait_for(folder: Path) -> None:
    """Wait until another process has built `folder` (its lock kept fresh while it works)."""
    lock = folder.with_name(f".{folder.name}.lock")
    idle = time.time()
    while not (folder / "manifest.json").exists():
        if lock.exists() and not _lock_owner_gone(lock):
            idle = time.time()
        elif time.time() - idle > STALE_LOCK_S:
            raise DataError(f"{folder}: waited {STALE_LOCK_S:.0f} s for another process to prepare it, and none is "
                            f"at work; run `t2t prepare` first, or check that the folder is shared")
        time.sleep(0.5)


def _build_locked(folder: Path, examples: Callable[[], Iterable], enc: Encoder, task, split: str) -> None:
    with _lock(folder) as mine:
        if not mine or (folder / "manifest.json").exists():
            return
        for old in folder.parent.glob(f".{folder.name}.tmp-*"):     # left by a builder that died
            shutil.rmtree(old, ignore_errors=True)
        if folder.exists():             # no manifest, and no builder at work (the lock is ours)
            log.warning(f"{folder}: prepared split without its manifest.json (deleted or damaged); "
                        f"preparing it again")
            shutil.rmtree(folder)
        tmp = folder.with_name(f".{folder.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        tmp.mkdir(parents=True)
        try:
            _build(tmp, folder.name, examples, enc, task, split)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / "manifest.json").exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)               # another node's identical copy won
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(folder.parent)


def _build(tmp: Path, key: str, examples: Callable[[], Iterable], enc: Encoder, task, split: str) -> None:
    started = time.time()
    writer = _Writer(tmp, id_dtype(enc.vocab_size))
    bar = tqdm(desc=f"preparing {split}", unit=" pairs", unit_scale=True, mininterval=2.0, file=sys.stderr,
               disable=None)
    try:
        encode(examples(), enc, writer, progress=bar.update)
    finally:
        bar.close()
    arrays = writer.finish()
    problems = task.problems.summary()
    try:
        ckpt.save(tmp / "task_state.pt", {"task_state": task.state_dict()})
    except OSError as e:
        raise DataError(f"{tmp / 'task_state.pt'}: cannot write ({e.strerror})") from None
    seconds = time.time() - started
    c = writer.counts
    manifest = {"format": FORMAT, "version": VERSION, "split": split, "key": key,
                "limits": enc.describe(), "counts": c, "arrays": arrays, "problems": problems,
                "seconds": round(seconds, 2), "examples_per_s": round(c["read"] / max(seconds, 1e-9), 1),
                "task_state_sha256": _file_sha256(tmp / "task_state.pt")}
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    ckpt.atomic_write(tmp / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    log.info(f"prepared {split}: {c['kept']:,} of {c['read']:,} examples kept ({c['filtered']} over the length limits "
             f"filtered, {c['truncated']} truncated, {c['empty']} empty) in {seconds:.1f} s "
             f"({manifest['examples_per_s']:,.0f} examples/s)")


def _manifest_digest(manifest: dict) -> str:
    """sha256 of a manifest's contents but its own checksum."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def open_split(folder: Path, verify: bool = True) -> Split:
    """A prepared split, memory-mapped; every file checked against the manifest first."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{folder / 'manifest.json'}: unreadable ({e}); delete {folder} to prepare it again") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise DataError(f"{folder}: not a prepared split of this version of t2t; delete it to prepare it again")
    if "manifest_sha256" in manifest and manifest["manifest_sha256"] != _manifest_digest(manifest):
        raise DataError(f"{folder / 'manifest.json'}: its contents do not match their checksum (damaged); delete "
                        f"{folder} to prepare it again")
    arrays = {}
    for name, spec in manifest["arrays"].items():
        path = folder / f"{name}.bin"
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        expected = dtype.itemsize * int(np.prod(shape))
        size = path.stat().st_size if path.exists() else -1
        if size != expected:
            raise DataError(f"{path}: {size if size >= 0 else 'no'} bytes where the manifest says {expected}; "
                            f"the prepared split is damaged: delete {folder} to prepare it again")
        if verify and _file_sha256(path) != spec["sha256"]:
            raise DataError(f"{path}: checksum differs from the manifest's; the prepared split is damaged: "
                            f"delete {folder} to prepare it again")
        arrays[name] = (np.memmap(path, dtype=dtype, mode="r", shape=shape) if expected
                        else np.zeros(shape, dtype=dtype))
    state_file = folder / "task_state.pt"
    if verify and _file_sha256(state_file) != manifest.get("task_state_sha256"):
        raise DataError(f"{state_file}: checksum differs from the manifest's; delete {folder} to prepare it again")
    task_state = ckpt.load(state_file)["task_state"]
    arrays["lengths"] = np.array(arrays["lengths"])          # 8 bytes an example, read by every batching
    return Split(**arrays, counts=manifest["counts"], task_state=task_state, folder=folder,
                 problems=manifest.get("problems", ""))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                h.update(block)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); delete {path.parent} to prepare it again") from None
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def cpu_threads() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
