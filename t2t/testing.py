"""Helpers for plugin authors' tests (also a pytest plugin: installing t2t gives these fixtures).

    def test_my_task(t2t_registry):
        counts = check_task("headlines", {"dir": str(DATA)})           # every split well-formed
        result = tiny_run({"task": "headlines", "data": {...}}, tmp_path)  # train/evaluate/generate
        assert result["report"]["metrics"]

Fixtures: `t2t_registry` (every installed plugin, fresh for the test) and `make_registry`
(a factory: exactly the given plugin objects, plus the built-ins unless `builtins=False`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
import torch

from t2t.assembly import build_task
from t2t.evaluation import evaluate
from t2t.pipeline import load
from t2t.recipe import load_recipe
from t2t.registry import Registry, get_registry, set_registry
from t2t.trainer import train

# model sizes that train in seconds on a CPU
TINY_MODELS = {
    "rnn": ["model.embed_dim=32", "model.hidden_dim=32"],
    "transformer": ["model.dim=32", "model.ff_dim=64", "model.layers=1", "model.heads=2"],
}


@contextlib.contextmanager
def using_registry(registry: Registry) -> Iterator[Registry]:
    """Make `registry` the process's registry inside the block."""
    old = set_registry(registry)
    try:
        yield registry
    finally:
        set_registry(old)


@pytest.fixture
def t2t_registry() -> Iterator[Registry]:
    """A fresh registry of every installed plugin (entry points), current for the test."""
    with using_registry(Registry.from_entry_points()) as reg:
        yield reg


@pytest.fixture
def make_registry():
    """make_registry(*plugins, builtins=True) -> a registry of exactly those, current for the test."""
    stack = contextlib.ExitStack()

    def make(*plugins: Any, builtins: bool = True) -> Registry:
        return stack.enter_context(using_registry(Registry.from_plugins(plugins, builtins=builtins)))

    with stack:
        yield make


def check_task(task: str | type, options: dict | None = None, data_dir: str | Path | None = None,
               splits: Sequence[str] | None = None, seed: int = 1, registry: Registry | None = None,
               limit: int | None = None) -> dict[str, int]:
    """Read every split of a task and check each example's shape; returns example counts.

    Raises AssertionError naming the split and example at the first problem."""
    registry = registry or get_registry()
    name = task if isinstance(task, str) else task.name
    recipe = load_recipe({"task": name, "data": options or {}, "seed": seed}, registry=registry)
    instance = build_task(recipe, registry, data_dir)
    cls = type(instance)
    counts = {}
    for split in splits or cls.splits:
        n = 0
        for ex in instance.read(split):
            where = f"task {name}, split {split}, example {n} ({getattr(ex, 'id', '')!r})"
            assert isinstance(ex.target, str) and ex.target.strip(), f"{where}: target must be non-empty text"
            if cls.source_kind == "text":
                assert isinstance(ex.source, str) and ex.source.strip(), f"{where}: source must be non-empty text"
            else:
                assert isinstance(ex.source, torch.Tensor) and ex.source.dim() == 2, \
                    f"{where}: a feature source is a (frames, features) tensor"
            assert all(isinstance(r, str) for r in ex.refs), f"{where}: references must be text"
            n += 1
            if limit and n >= limit:
                break
        assert n > 0, f"task {name}: split {split} is empty"
        counts[split] = n
    return counts


def tiny_run(recipe: str | Path | dict, tmp_path: str | Path, overrides: Sequence[str] = (), steps: int = 30,
             data_dir: str | Path | None = None, registry: Registry | None = None, eval_split: str = "test",
             eval_limit: int = 20, sources: Sequence[Any] | None = None) -> dict:
    """Train a recipe with a tiny model for a few steps, evaluate and generate; returns what each gave.

    Checks the plumbing of a recipe end to end in seconds; the scores mean nothing."""
    registry = registry or get_registry()
    base = load_recipe(recipe, list(overrides), registry=registry)
    tiny = [] if getattr(base.model, "pretrained", None) else TINY_MODELS.get(base.model.arch, [])
    run_dir = Path(tmp_path) / "tiny_run"
    final = load_recipe(recipe, [*tiny, f"train.max_steps={steps}", f"train.validate_every={steps}",
                                 "train.valid_max_sentences=8", "train.device=cpu", f"output_dir={run_dir}",
                                 *overrides], registry=registry)
    summary = train(final, data_dir=data_dir, registry=registry, overwrite=True)
    report = evaluate(run_dir, final, split=eval_split, data_dir=data_dir, device="cpu", registry=registry,
                      limit=eval_limit)
    pipe = load(run_dir, device="cpu", data_dir=data_dir)
    if sources is None:
        sources = [ex.source for ex in pipe.task.examples(eval_split)[:3]]
    outputs = pipe.generate(list(sources))
    return {"summary": summary, "report": report, "outputs": outputs, "run_dir": run_dir, "recipe": final}


def tiny_recipe(task: str = "reverse", arch: str = "rnn", **sections: Any) -> dict:
    """A recipe dict for a tiny model on a synthetic task; `sections` update it key by key."""
    recipe: dict[str, Any] = {
        "task": task,
        "data": {"train_size": 600, "valid_size": 40, "test_size": 40} if task in ("reverse", "dates") else {},
        "tokenizer": {"name": "char"},
        "model": {"arch": arch, **({"embed_dim": 32, "hidden_dim": 32} if arch == "rnn" else
                                   {"dim": 32, "ff_dim": 64, "layers": 1, "heads": 2})},
        "train": {"max_tokens": 600, "max_epochs": 2, "lr": 3e-3, "device": "cpu", "log_every": 10},
        "seed": 1,
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    return recipe

