"""Reading and writing Hugging Face-format model folders: `config.json`, `generation_config.json`,
the weights (`model.safetensors`, a sharded `model.safetensors.index.json`, or `pytorch_model.bin`
read with `weights_only`) and the tokenizer files, which are kept as bytes so that they can be
written back unchanged. `transformers` is not needed: safetensors reads and writes the weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from t2t.errors import CheckpointError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def is_pretrained_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder with a `config.json` (a pretrained model), not a t2t run."""
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file() and not (p / "checkpoints").is_dir()


class Folder:
    """A pretrained model's folder: its config, generation config, weights and other files."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(os.path.expanduser(path))
        if not self.path.is_dir():
            raise CheckpointError(f"{self.path}: no such pretrained model folder")
        self.config = self.read_json("config.json", required=True)
        self.generation = self.read_json("generation_config.json") or {}

    def __repr__(self) -> str:
        return f"Folder({str(self.path)!r})"

    def file(self, name: str, required: bool = True) -> Path | None:
        p = self.path / name
        if p.is_file():
            return p
        if required:
            raise CheckpointError(f"{self.path}: no {name}; a pretrained folder of this kind holds it "
                                  f"(copy the whole folder as it was downloaded)")
        return None

    def read_json(self, name: str, required: bool = False) -> dict | None:
        p = self.file(name, required)
        if p is None:
            return None
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{p}: not valid JSON ({e}); the folder is damaged: copy it again") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{p}: expected a JSON object")
        return data

    def read_bytes(self, name: str, required: bool = True) -> bytes | None:
        p = self.file(name, required)
        return None if p is None else p.read_bytes()

    def weight_files(self) -> list[Path]:
        """The files holding the weights (the shards an index names, or the one file)."""
        for name in WEIGHT_FILES:
            p = self.path / name
            if not p.is_file():
                continue
            if name.endswith(".index.json"):
                index = self.read_json(name)
                files = sorted(set((index.get("weight_map") or {}).values()))
                if not files:
                    raise CheckpointError(f"{p}: its weight_map names no files")
                return [self.file(f) for f in files]
            return [p]
        raise CheckpointError(f"{self.path}: no weights; a pretrained folder holds one of "
                              f"{', '.join(WEIGHT_FILES)}")

    def weights(self) -> "Weights":
        """The folder's tensors by their names there, read one at a time when asked for."""
        return Weights(self.weight_files())


class Weights:
    """A read-only mapping of a folder's tensor names to tensors, each read when asked for
    (safetensors are opened, not loaded; .bin files are memory-mapped), so that a model's weights
    are copied in one tensor at a time instead of holding a second copy of all of them."""

    def __init__(self, files: list[Path]):
        self.where: dict[str, object] = {}
        for path in files:
            handle = _open_weights(path)
            for key in handle.keys():
                self.where[key] = (handle, path)

    def keys(self):
        return self.where.keys()

    def __contains__(self, key) -> bool:
        return key in self.where

    def __getitem__(self, key: str) -> torch.Tensor:
        handle, path = self.where[key]
        try:
            return handle.get_tensor(key) if hasattr(handle, "get_tensor") else handle[key]
        except Exception as e:      # a damaged file shows when a tensor is read
            raise CheckpointError(f"{path}: tensor {key!r} unreadable ({str(e).splitlines()[0][:200]}); the file "
                                  f"is damaged or truncated: copy it again") from None


def _open_weights(path: Path):
    if path.suffix == ".safetensors":
        try:
            return safe_open(str(path), "pt")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not readable safetensors ({e}); the file is damaged or "
                                  f"truncated: copy it again") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:               # an old (non-zip) torch file cannot be memory-mapped
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:      # torch raises several kinds for a damaged or foreign file
            raise CheckpointError(f"{path}: not readable as plain weights ({str(e).splitlines()[0][:200]}); "
                                  f"t2t reads .bin weights without running pickled code: convert it to "
                                  f"safetensors, or copy it again if it is damaged") from None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a mapping of names to tensors")
    return data


def write_folder(out: Path, weights: dict[str, torch.Tensor], files: dict[str, bytes], force: bool = False) -> Path:
    """Write a folder beside `out` and rename it into place: `model.safetensors` (with its
    {"format": "pt"} metadata) and the other files (config.json among them) byte for byte."""
    out = Path(out)
    if out.exists() and not force:
        raise CheckpointError(f"{out} exists; choose another folder or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
