"""Checkpoints: atomic save, safe load, averaging, and the run directory's index.

A checkpoint is a dict of tensors and plain Python values (the recipe as YAML text), written to a
temporary file in the same folder, flushed to disk and renamed over the target, so a crash leaves
either the old file or the new one. It is read with `torch.load(weights_only=True)`, which never
runs pickled code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from t2t import pretrained
from t2t.errors import CheckpointError
from t2t.lora import is_adapter
from t2t.metric import improves
from t2t.pretrained.folder import is_pretrained_folder

log = logging.getLogger("t2t")

FORMAT = "t2t-checkpoint"
VERSION = 1


def atomic_write(path: Path, write) -> None:
    """Call `write(file_object)` on a temporary file, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:                                   # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save(path: Path, payload: dict) -> None:
    """Write a checkpoint atomically, with the checksum of its contents."""
    payload = {**payload, "format": FORMAT, "format_version": VERSION}
    payload["checksum"] = content_digest(payload)
    atomic_write(Path(path), lambda f: torch.save(payload, f))


def content_digest(data: Any) -> str:
    """sha256 of nested plain data and tensors (dtypes, shapes and bytes), the "checksum" entry of a
    dict left out: what `save` records and `load` checks. torch's zip files carry CRCs that its
    reader does not check, so a flipped bit in a weight would otherwise load as a wrong number."""
    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            h.update(f"D{len(x)}".encode())
            for k in sorted(x, key=str):
                feed(str(k))
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"L{len(x)}".encode())
            for v in x:
                feed(v)
        else:
            h.update(f"{type(x).__name__}:{x!r};".encode())
    feed({k: v for k, v in data.items() if k != "checksum"} if isinstance(data, dict) else data)
    return h.hexdigest()


def load(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without running any pickled code; clear errors for anything else."""
    path = Path(path)
    if path.is_dir():
        path = resolve(path)
    if is_pretrained_folder(path):
        raise CheckpointError(f"{path}: a pretrained folder, not a checkpoint file; t2t.assembly.read_checkpoint "
                              f"reads both")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.is_file() and not zipfile.is_zipfile(path):  # torch.save writes a zip archive: these bytes are not one
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({path.stat().st_size} bytes that are not a "
                              f"torch checkpoint archive); use another checkpoint of the run, or --resume from the "
                              f"one before")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load: it holds objects other than tensors and plain data, "
                              f"which could run code ({str(e).splitlines()[0]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        size = path.stat().st_size
        raise CheckpointError(f"{path}: not a readable checkpoint ({size} bytes; truncated or not a torch file: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a torch file, but not a t2t checkpoint (no '{FORMAT}' marker)")
    if data.get("format_version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint format {data['format_version']} is newer than this t2t "
                              f"understands ({VERSION}); upgrade t2t")
    verify(data, path)
    if "lora_base" in data:
        return pretrained.complete_lora_checkpoint(data, path)
    return data


def verify(data: dict, path: Path) -> None:
    """Check a loaded checkpoint against the checksum it carries; one written before t2t recorded
    checksums loads with a note."""
    recorded = data.get("checksum")
    if recorded is None:
        _note_unchecked(str(path))
        return
    if content_digest(data) != recorded:
        run = path.parent.parent if path.parent.name == "checkpoints" else None
        hint = ("it is damaged (a flipped bit or a partial copy): use a trusted copy, or delete it and take "
                "another checkpoint of the run" + (f" (t2t train --resume then continues from the one before; "
                                                     f"`ls {path.parent}`)" if run else ""))
        raise CheckpointError(f"{path}: its contents do not match the checksum written with them; {hint}")


@functools.cache
def _note_unchecked(path: str) -> None:
    log.info(f"{path}: written before t2t recorded checksums; loaded without checking it")


# --------------------------------------------------------------------------- run directory


def index_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "index.json"


def read_index(run_dir: Path) -> dict:
    p = index_path(run_dir)
    if not p.exists():
        return {"checkpoints": [], "best": None, "last": None}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p}: unreadable checkpoint index ({e})") from None


def write_index(run_dir: Path, index: dict) -> None:
    text = json.dumps(index, indent=1).encode("utf-8")
    atomic_write(index_path(run_dir), lambda f: f.write(text))


def resolve(path: Path, which: str = "best") -> Path:
    """A run directory -> its best (or last) checkpoint file; a file stays as it is. "best" is the
    weight average of checkpoints where training made one (`train.average_best`, `average_last`)."""
    path = Path(path)
    if path.is_file() or path.suffix == ".pt":
        return path
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    if is_pretrained_folder(path):
        return path                                  # read by t2t.assembly.read_checkpoint
    index = read_index(path)
    average = index.get("average")
    if which == "best" and average and average.get("used", True):
        return path / "checkpoints" / average["name"]
    name = index.get(which) or index.get("last")
    found = sorted((path / "checkpoints").glob("step_*.pt"))
    if name and ((path / "checkpoints" / name).exists() or not found):
        return path / "checkpoints" / name
    if not found:
        raise CheckpointError(f"{path}: no checkpoints in this run directory (expected checkpoints/step_*.pt)")
    if name:                                      # deleted (e.g. found damaged): the newest one left
        log.warning(f"{path}: its {which} checkpoint {name} is gone; taking {found[-1].name}, the newest left")
    return found[-1]


def rank(entries: list[dict], higher_is_better: bool) -> list[dict]:
    """Index entries with a score, best first (ties: the earlier step)."""
    scored = [e for e in entries if e.get("score") is not None]
    return sorted(scored, key=lambda e: (-e["score"] if higher_is_better else e["score"], e["step"]))


def best_checkpoints(run_dir: Path, n: int) -> list[Path]:
    """The run's `n` best scored checkpoints that still exist, best first (ties: the earlier step)."""
    index = read_index(run_dir)
    ranked = rank(index["checkpoints"], index.get("higher_is_better", False))
    paths = [Path(run_dir) / "checkpoints" / e["name"] for e in ranked]
    return [p for p in paths if p.exists()][:n]


def last_checkpoints(run_dir: Path, n: int) -> list[Path]:
    """The run's `n` most recent checkpoints, oldest first."""
    return sorted((Path(run_dir) / "checkpoints").glob("step_*.pt"))[-n:] if n > 0 else []


def average_run(run_dir: Path, paths: list[Path]) -> dict | None:
    """Average `paths` (checkpoints of the run) into checkpoints/average.pt and record it in the
    index (a later checkpoint's index update drops the record); None where `paths` is empty."""
    if not paths:
        return None
    name = "average.pt"
    save(Path(run_dir) / "checkpoints" / name, average(paths))
    index = read_index(run_dir)
    index["average"] = {"name": name, "from": [p.name for p in paths]}
    write_index(run_dir, index)
    return index["average"]


def score_average(run_dir: Path, score: float | None) -> dict:
    """Record the average's validation score. Where it is worse than the best checkpoint's (an
    average over checkpoints from early in a short run, whose weights were still far apart), the
    average stays on disk but is marked unused, and `resolve` picks the best checkpoint instead."""
    index = read_index(run_dir)
    best = next((e for e in index["checkpoints"] if e["name"] == index.get("best")), {})
    worse = score is not None and best.get("score") is not None and \
        improves(best["score"], score, index.get("higher_is_better", False))
    index["average"].update(score=score, used=not worse, best=best.get("name"), best_score=best.get("score"))
    write_index(run_dir, index)
    return index["average"]


def clean_temporaries(run_dir: Path) -> int:
    """Remove half-written files a killed save left behind; returns how many."""
    n = 0
    for tmp in (Path(run_dir) / "checkpoints").glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        n += 1
    return n


def average(paths: Iterable[Path]) -> dict:
    """A checkpoint whose model weights are the mean of several (same architecture)."""
    paths = list(paths)
    if not paths:
        raise CheckpointError("nothing to average")
    first = load(paths[0])
    total = {k: v.double().clone() if v.is_floating_point() else v for k, v in first["model"].items()}
    for p in paths[1:]:
        state = load(p)["model"]
        if state.keys() != total.keys():
            raise CheckpointError(f"{p}: its parameters differ from {paths[0]}'s; only checkpoints of one run average")
        for k, v in state.items():
            if v.is_floating_point():
                total[k] += v.double()
    dtypes = {k: v.dtype for k, v in first["model"].items()}
    out = {k: v for k, v in first.items() if k != "train_state"}
    out["model"] = {k: (v / len(paths)).to(dtypes[k]) if v.is_floating_point() else v for k, v in total.items()}
    if "lora_base" in out:              # adapters averaged; the base stays the pretrained folder's
        out["model"] = {k: v for k, v in out["model"].items() if is_adapter(k)}
    out["averaged_from"] = [str(p) for p in paths]
    return out


def plain_rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain values (so weights_only loading accepts it)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype("int64")), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def same_data(a: Any, b: Any) -> bool:
    """Equality of nested plain data that may hold tensors."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and bool((a == b).all()))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_data(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_data(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
