"""Pretrained models from Hugging Face-format folders (config.json, weights, tokenizer files).

A folder is one more source of a model and its tokenizers: `describe` turns its config into the
recipe sections it implies (t2t's own Transformer, assembled from parts; the family's tokenizer;
the folder's decoding defaults), `weights` and `tokenizer_states` what a t2t checkpoint holds (so
`t2t.assembly.read_checkpoint` reads a folder as it reads a run, and `generate`, `evaluate`, `serve`,
`export` and `train.init_from` take one), and `export_folder` writes a run that started from one back in the same format. One module per
family holds its config mapping, weight names and tokenizer.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from types import ModuleType

import torch

from t2t import lora
from t2t.errors import CheckpointError, T2TError
from t2t.options import MAX_OUTPUT_TOKENS, TokenizerOptions
from t2t.pretrained import bart, m2m100, marian, mbart, t5, whisper
from t2t.pretrained.folder import Folder, is_pretrained_folder, write_folder
from t2t.pretrained.tokenizer import GENERATION_KEYS

__all__ = ["Description", "describe", "export_folder", "is_pretrained_folder", "FAMILIES"]

log = logging.getLogger("t2t")
FAMILIES: dict[str, ModuleType] = {t: m for m in (marian, bart, m2m100, mbart, t5, whisper) for t in m.MODEL_TYPES}


def tokenizer_class(fam: ModuleType, files: dict[str, bytes]) -> type:
    """The family's tokenizer for these files (M2M100 and NLLB share a model type)."""
    return fam.tokenizer_class(files) if hasattr(fam, "tokenizer_class") else fam.Tokenizer


def all_tokenizers() -> list[type]:
    """Every family's tokenizer classes (registered as tokenizer plugins)."""
    return list(dict.fromkeys(t for f in FAMILIES.values() for t in getattr(f, "TOKENIZERS", (f.Tokenizer,))))
EARLY_STOPPING = {False: "heuristic", True: "k_finished", "never": "never"}


def family(folder: Folder) -> ModuleType:
    mt = folder.config.get("model_type")
    if mt not in FAMILIES:
        raise CheckpointError(f"{folder.path}/config.json: model_type {mt!r} is not supported; supported: "
                              f"{', '.join(sorted(FAMILIES))}")
    return FAMILIES[mt]


@dataclasses.dataclass(frozen=True)
class Description:
    """What a folder implies for a recipe: its `model:`, `tokenizer:` and `decode:` keys, and for
    a family that reads something other than text, its task and the `data:` keys it fixes."""

    path: Path
    model_type: str
    model: dict
    tokenizer: dict
    decode: dict
    languages: tuple[str, ...] = ()      # the codes of a family with languages (tokenizer.source_lang ...)
    tokenizer_free: tuple[str, ...] = ()  # tokenizer keys a recipe may set (T5's source_prefix)
    task: str = ""                       # the task the model reads (Whisper: speech); "" any text task
    data: dict = dataclasses.field(default_factory=dict)


def describe(path: str | os.PathLike) -> Description:
    """The recipe sections a pretrained folder implies (reads config files only, no weights)."""
    folder = Folder(path)
    fam = family(folder)
    try:
        model = fam.model_options(folder.config, folder.weights())
    except T2TError as e:
        raise CheckpointError(f"{folder.path}: {e}") from None
    model["pretrained"] = str(path)
    files = fam.tokenizer_files(folder)      # checks that the tokenizer files are there
    gen = _generation(folder, files)
    cls = tokenizer_class(fam, files)
    languages: tuple[str, ...] = ()
    decode = decode_defaults(gen, model["max_positions"])
    try:
        if "source_lang" in getattr(cls.Options, "__dataclass_fields__", {}):
            probe = cls.from_files(cls.Options(name=cls.name, shared=False), files, sides(fam)[0])
            languages = tuple(sorted(probe.languages))
        if hasattr(fam, "decode_defaults"):                  # a family whose decoder has a prompt (Whisper)
            decode.update(fam.decode_defaults(gen, (2 if languages else 0) + (probe.no_timestamps is not None)))
        data = fam.data_options(files, folder.config) if hasattr(fam, "data_options") else {}
    except T2TError as e:
        raise CheckpointError(f"{folder.path}: {e}") from None
    base = set(TokenizerOptions.__dataclass_fields__)
    free = tuple(k for k in getattr(cls.Options, "__dataclass_fields__", {}) if k not in base)
    return Description(folder.path, folder.config["model_type"], model, {"name": cls.name, "shared": False},
                       decode, languages, free, getattr(fam, "TASK", ""), data)


def sides(fam: ModuleType) -> tuple[str, ...]:
    """The tokenizer sides of a family: source and target, or the target alone (Whisper's source is audio)."""
    return getattr(fam, "SIDES", ("source", "target"))


def _generation(folder: Folder, files: dict[str, bytes]) -> dict:
    if folder.generation:
        return folder.generation
    return {k: folder.config[k] for k in GENERATION_KEYS if folder.config.get(k) is not None}


def decode_defaults(gen: dict, max_positions: int) -> dict:
    """`decode:` keys from a generation config, as transformers' generate reads it: max_length
    counts the decoder's start token, min_length likewise; without either, 20 new tokens (within
    the model's positions)."""
    if gen.get("max_new_tokens"):
        most = int(gen["max_new_tokens"])
    elif gen.get("max_length"):
        most = int(gen["max_length"]) - 1
    else:
        most = min(20, max_positions - 1)
    out = {"rules": "transformers", "beam": int(gen.get("num_beams") or 1), "max_len_a": 0.0,
           "max_len_b": max(1, min(int(most), MAX_OUTPUT_TOKENS)),
           "length_penalty": float(gen.get("length_penalty", 1.0)),
           "early_stopping": EARLY_STOPPING.get(gen.get("early_stopping", False), "heuristic"),
           "no_repeat_ngram_size": int(gen.get("no_repeat_ngram_size") or 0)}
    if gen.get("min_length"):
        out["min_len"] = max(0, int(gen["min_length"]) - 1)
    return out


def tokenizer_states(path: str | os.PathLike, options) -> dict:
    """The source and target tokenizer states of a folder (as `Tokenizer.state_dict()` gives)."""
    folder = Folder(path)
    fam = family(folder)
    files = fam.tokenizer_files(folder)
    cls = tokenizer_class(fam, files)
    return {side: cls.from_files(options, files, side).state_dict() for side in sides(fam)}


def weight_items(path: str | os.PathLike):
    """(t2t name, tensor) of a folder's weights, one tensor read at a time."""
    folder = Folder(path)
    fam = family(folder)
    items = fam.weights_to_t2t(folder.weights(), folder.config)
    while True:
        try:
            yield next(items)
        except StopIteration:
            return
        except CheckpointError as e:
            raise CheckpointError(f"{folder.path}: {e}") from None


def weights(path: str | os.PathLike) -> dict:
    """The folder's weights under t2t's names."""
    return dict(weight_items(path))


@torch.no_grad()
def load_weights(model, path: str | os.PathLike) -> None:
    """Copy a folder's weights into a t2t model built from its description, one tensor at a time
    (LoRA adapters, which the folder has not, keep their initial values)."""
    own = model.state_dict()
    seen = set()
    for name, tensor in weight_items(path):
        if name not in own or own[name].shape != tensor.shape:
            raise CheckpointError(f"{path}: its weight {name} {tuple(tensor.shape)} does not fit the model its "
                                  f"config describes ({tuple(own[name].shape) if name in own else 'no such weight'})")
        own[name].copy_(tensor)
        seen.add(name)
    missing = [k for k in own if k not in seen and not lora.is_adapter(k)]
    if missing:
        raise CheckpointError(f"{path}: the model its config describes has weights the folder lacks: {missing[:3]}")
    log.info(f"model: the weights of the pretrained folder {path}")


@functools.cache
def _digest(path: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    for name, tensor in weight_items(path):               # in the mapping's fixed order
        h.update(name.encode())
        h.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def weights_digest(path: str | os.PathLike) -> str:
    """sha256 of a folder's weights (names and bytes), remembered while its files are unchanged:
    LoRA checkpoints record it, so adapters are never applied to other base weights."""
    folder = Folder(path)
    files = sorted(p for p in folder.path.iterdir() if p.name.startswith(("model", "pytorch_model")))
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _digest(str(folder.path), stamp)


def complete_lora_checkpoint(data: dict, where) -> dict:
    """A LoRA checkpoint holds its adapters; the base weights come from the pretrained folder it
    names, checked against the digest it recorded."""
    base = data["lora_base"]
    folder = base["pretrained"]
    if not is_pretrained_folder(folder):
        raise CheckpointError(f"{where}: a LoRA checkpoint holds only its adapters; its base weights are those of "
                              f"the pretrained folder {folder}, which is not there: restore it (or export the "
                              f"run with --format hf where the folder is)")
    if weights_digest(folder) != base["sha256"]:
        raise CheckpointError(f"{where}: the pretrained folder {folder} holds other weights than those its adapters "
                              f"were trained on; restore the original folder")
    return {**data, "model": {**weights(folder), **data["model"]}}


def export_folder(model_state: dict, tokenizer_state: dict, out: str | os.PathLike, force: bool = False) -> Path:
    """Write t2t weights of a pretrained family back as a folder: the original config and
    tokenizer files (kept in the tokenizer state) byte for byte, the weights as safetensors."""
    files = {k: bytes(v.numpy().tobytes()) for k, v in tokenizer_state["extra"]["files"].items()}
    config = json.loads(files["config.json"].decode("utf-8"))
    fam = FAMILIES.get(config.get("model_type"))
    if fam is None:
        raise T2TError(f"export hf: model_type {config.get('model_type')!r} is not supported")
    return write_folder(Path(out), fam.weights_from_t2t(model_state, config), files, force=force)
