"""The one place a recipe's parts are built, in the order every command needs them:

    task -> tokenizers -> model -> prepared training split

`t2t train` and `t2t prepare` build all four; `generate`, `evaluate`, `serve` and `export` rebuild
the first three from a checkpoint (`Pipeline.from_checkpoint`). Each step is a method of
`Assembly`, so a command takes the steps it needs and none is written twice.

    parts = Assembly(recipe)
    parts.set_tokenizers(parts.tokenizer_states())    # trained once per data and options, then cached
    model = parts.model(fresh=True)                   # pretrained weights or train.init_from applied
    split = parts.training_split(parts.limits(model))
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Iterable, Sequence

from t2t import checkpoint as ckpt
from t2t import dataset, lora, pretrained
from t2t.errors import T2TError
from t2t.init_from import initialise
from t2t.models.base import ModelSpec, Seq2Seq
from t2t.paths import resolve_data_dir
from t2t.pretrained.folder import is_pretrained_folder
from t2t.recipe import Recipe, load_recipe
from t2t.registry import Registry, get_registry
from t2t.task import Task
from t2t.tokenizer import Tokenizer
from t2t.version import __version__


def build_task(recipe: Recipe, registry: Registry, data_dir: str | os.PathLike | None = None) -> Task:
    cls = registry.get("tasks", recipe.task)
    task = cls(recipe.data, resolve_data_dir(recipe, data_dir), recipe.seed)
    task.data_root = Path(data_dir) if data_dir else None    # where other data paths of the recipe resolve
    return task


def build_tokenizers(recipe: Recipe, registry: Registry, task: Task, train_examples: Iterable | None = None,
                     states: dict | None = None) -> tuple[Tokenizer | None, Tokenizer]:
    """(source tokenizer or None for feature sources, target tokenizer), trained or restored.
    `train_examples` is iterated once or twice (as a stream: it may be a re-readable task split)."""
    cls = registry.get("tokenizers", recipe.tokenizer.name)
    text_source = task.source_kind == "text"
    if states is not None:
        tgt = cls.from_state(recipe.tokenizer, states["target"])
        if not text_source:
            return None, tgt
        if recipe.tokenizer.shared:
            return tgt, tgt
        return cls.from_state(recipe.tokenizer, states["source"]), tgt
    symbols = task.special_tokens
    tgt = cls(recipe.tokenizer, symbols)
    if text_source and recipe.tokenizer.shared:
        tgt.train(t for ex in train_examples for t in (ex.source, ex.target))
        return tgt, tgt
    tgt.train(ex.target for ex in train_examples)
    if not text_source:
        return None, tgt
    src = cls(recipe.tokenizer, symbols)
    src.train(ex.source for ex in train_examples)
    return src, tgt


def model_spec(task: Task, src_tok: Tokenizer | None, tgt_tok: Tokenizer, shared: bool) -> ModelSpec:
    same = src_tok is not None and (src_tok is tgt_tok or (not shared and src_tok.vocab == tgt_tok.vocab))
    return ModelSpec(src_vocab=len(src_tok.vocab) if src_tok else 0, tgt_vocab=len(tgt_tok.vocab),
                     pad=tgt_tok.vocab.pad, feature_dim=task.feature_dim(), shared_vocab=same)


def build_model(recipe: Recipe, registry: Registry, spec: ModelSpec) -> Seq2Seq:
    """The recipe's model, with its LoRA adapters (`train.lora`) and frozen parts (`train.freeze`)."""
    cls = registry.get("models", recipe.model.arch)
    try:
        model = cls(recipe.model, spec)
    except ValueError as e:
        raise T2TError(f"model '{recipe.model.arch}': {e}") from None
    o = recipe.train
    if o.lora is not None:
        lora.add(model, o.lora.rank, o.lora.alpha, o.lora.dropout, o.lora.targets)
    if o.freeze:
        lora.freeze(model, o.freeze)
    return model


def encoder(task: Task, src_tok: Tokenizer | None, tgt_tok: Tokenizer, max_source_len: int | None = None,
            max_target_len: int | None = None, overlong: str = "filter") -> dataset.Encoder:
    """How examples become ids for training and scoring: sources as they are (the limits and the
    `overlong` policy, not the model's limit, decide what is cut), in batches."""
    if src_tok is not None:
        sources = src_tok.encode_batch
    else:
        sources = lambda xs: [task.prepare_source(x) for x in xs]   # noqa: E731
    size = max(len(tgt_tok.vocab), len(src_tok.vocab) if src_tok else 0)
    return dataset.Encoder(sources, tgt_tok.encode_batch, max_source_len, max_target_len, overlong, size)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint file's contents (`t2t.checkpoint.load`), or a pretrained folder read as one."""
    path = Path(path)
    return folder_checkpoint(path) if is_pretrained_folder(path) else ckpt.load(path)


def folder_checkpoint(path: str | os.PathLike, registry: Registry | None = None) -> dict:
    """A pretrained folder read as a t2t checkpoint: recipe (translation, or the task the family
    reads, and the folder's sections), spec, tokenizer states and weights."""
    registry = get_registry(registry)
    task = getattr(pretrained.family(pretrained.Folder(path)), "TASK", "")
    sections = {"task": task} if task else {"task": "translation", "data": {"source": "source", "target": "target"}}
    recipe = load_recipe({**sections, "model": {"pretrained": str(path)}, "output_dir": str(path)}, registry=registry)
    states = pretrained.tokenizer_states(path, recipe.tokenizer)
    parts = Assembly(recipe, registry)
    parts.set_tokenizers(states)
    spec = model_spec(parts.task, parts.src_tok, parts.tgt_tok, recipe.tokenizer.shared)
    return {"format": ckpt.FORMAT, "format_version": 1, "t2t_version": __version__,
            "recipe": recipe.to_yaml(), "plugins": {}, "spec": dataclasses.asdict(spec), "tokenizers": states,
            "task_state": {}, "model": pretrained.weights(path), "pretrained_folder": str(path)}


class Assembly:
    """A recipe's parts, built step by step: the task at once, then the tokenizers (from states:
    trained, cached, a checkpoint's or a pretrained folder's), then the model and the training split."""

    def __init__(self, recipe: Recipe, registry: Registry | None = None, data_dir: str | os.PathLike | None = None,
                 task_state: dict | None = None):
        self.recipe, self.registry, self.data_dir = recipe, get_registry(registry), data_dir
        self.task = build_task(recipe, self.registry, data_dir)
        if task_state:
            self.task.load_state_dict(task_state)
        self.states: dict | None = None
        self.src_tok: Tokenizer | None = None
        self.tgt_tok: Tokenizer | None = None

    @functools.cached_property
    def store(self) -> dataset.Store:
        """Where this data's prepared splits and trained tokenizers are kept (shared between runs)."""
        return dataset.Store.for_recipe(self.recipe, self.task)

    def tokenizer_states(self) -> dict:
        """The tokenizer states a new run starts from: a pretrained folder's, else those trained on
        the training split (streamed; SentencePiece samples it) or found trained for this data."""
        folder = getattr(self.recipe.model, "pretrained", None)
        if folder:
            return pretrained.tokenizer_states(folder, self.recipe.tokenizer)

        def fit():
            with self.task.uncounted():           # the data's problems are counted when it is prepared
                src, tgt = build_tokenizers(self.recipe, self.registry, self.task, _Reread(self.task, "train"))
            return {"target": tgt.state_dict(), **({"source": src.state_dict()} if src else {})}
        return self.store.tokenizers(fit)

    def set_tokenizers(self, states: dict) -> tuple[Tokenizer | None, Tokenizer]:
        self.states = states
        self.src_tok, self.tgt_tok = build_tokenizers(self.recipe, self.registry, self.task, states=states)
        return self.src_tok, self.tgt_tok

    def model(self, spec: ModelSpec | None = None, fresh: bool = False) -> Seq2Seq:
        """The recipe's model for these tokenizers (or a saved `spec`); `fresh` (a new run) starts
        it from the pretrained folder's weights and then `train.init_from`'s."""
        if spec is None:
            spec = model_spec(self.task, self.src_tok, self.tgt_tok, self.recipe.tokenizer.shared)
        model = build_model(self.recipe, self.registry, spec)
        if fresh:
            folder = getattr(self.recipe.model, "pretrained", None)
            if folder:
                pretrained.load_weights(model, folder)
            o = self.recipe.train
            if o.init_from:
                path = ckpt.resolve(Path(o.init_from))
                initialise(model, path, read_checkpoint(path), o.init_only, self.states)
        return model

    def limits(self, model: Seq2Seq) -> tuple[int | None, int | None]:
        """(source, target) length limits of training: the recipe's, within the model's (the
        target's one position less, which </s> or <s> takes)."""
        src_most, tgt_most = model.length_limits()
        d = self.recipe.data
        return _tightest(d.max_source_len, src_most), _tightest(d.max_target_len, tgt_most - 1 if tgt_most else None)

    def encoder(self, max_source_len: int | None, max_target_len: int | None, overlong: str) -> dataset.Encoder:
        return encoder(self.task, self.src_tok, self.tgt_tok, max_source_len, max_target_len, overlong)

    def training_split(self, limits: Sequence[int | None], build: bool = True, fresh: bool = True) -> dataset.Split:
        """The prepared training split for these tokenizers and limits, made by this process when
        missing if `build` (else it waits for the process that makes it); `fresh` takes the task's
        state from it (a resumed run has it from its checkpoint)."""
        split = self.store.split("train", lambda: self.task.stream("train"),
                                 self.encoder(*limits, self.recipe.data.overlong), self.states, build=build)
        if fresh:
            self.task.load_state_dict(split.task_state)
        return split


def prepare(recipe: Recipe, data_dir: str | os.PathLike | None = None, registry: Registry | None = None) -> dict:
    """Train the recipe's tokenizers and prepare its training split (or find both made), as
    `train` would before its first update; returns where they are and the split's counts."""
    parts = Assembly(recipe, registry, data_dir)
    parts.set_tokenizers(parts.tokenizer_states())
    split = parts.training_split(parts.limits(parts.model()))
    size = sum(f.stat().st_size for f in split.folder.iterdir())
    folder = getattr(recipe.model, "pretrained", None)      # its tokenizers come with the folder
    return {"tokenizers": str(folder or parts.store.tokenizers_path()),
            "splits": {"train": {"folder": str(split.folder), "counts": split.counts, "bytes": size}}}


class _Reread:
    """A task's split as an iterable that reads the data again on each pass (never held whole)."""

    def __init__(self, task: Task, split: str):
        self.task, self.split = task, split

    def __iter__(self):
        return self.task.stream(self.split)


def _tightest(*limits: int | None) -> int | None:
    """The smallest of the given length limits (None: no limit)."""
    given = [x for x in limits if x is not None]
    return min(given) if given else None
