"""The plugin contract: one hookspec per thing a plugin can add or react to.

A plugin is a module (or object) with functions decorated by `t2t.hookimpl`, announced through
the `t2t` entry-point group. Registration hooks collect factories and do no work; the
training-event hooks are notifications and return nothing.
"""

from __future__ import annotations

import inspect
import sys

import pluggy

hookspec = pluggy.HookspecMarker("t2t")
hookimpl = pluggy.HookimplMarker("t2t")


@hookspec
def t2t_register_tasks(register):
    """Register task classes: call `register(TaskSubclass)` once per task.

    A task has a unique `name`, an `Options` dataclass (the keys it accepts under `data:`), says
    whether its source is text or features, and which metrics suit it by default.
    """


@hookspec
def t2t_register_tokenizers(register):
    """Register tokenizer classes: call `register(TokenizerSubclass)` once per tokenizer.

    A tokenizer has a unique `name` and an `Options` dataclass (its keys under `tokenizer:`).
    """


@hookspec
def t2t_register_metrics(register):
    """Register metric classes: call `register(MetricSubclass)` once per metric.

    A metric has a unique `name`, says whether higher is better, and accumulates corpus
    statistics batch by batch.
    """


@hookspec
def t2t_register_models(register):
    """Register model architectures: call `register(ModelSubclass)` once per architecture.

    A model has a unique `name` (the recipe's `model.arch`), an `Options` dataclass (its keys
    under `model:`) and implements `t2t.models.Seq2Seq`. Through that interface alone it trains,
    decodes with every search, and joins ensembles (`--checkpoint RUN_A RUN_B`), also with models of
    other architectures trained on the same tokenizers.
    """


@hookspec
def t2t_register_loggers(register):
    """Register training-logger classes: call `register(LoggerSubclass)` once per logger.

    A logger has a unique `name` (an entry of the recipe's `loggers:`), an `Options` dataclass
    (its keys there) and implements training-event hooks as methods; a run makes one instance.
    """


@hookspec
def t2t_run_start(run):
    """A training run starts; `run` is a `t2t.trainer.RunInfo` (directory, recipe, rank, resumed)."""


@hookspec
def t2t_step_end(run, step, logs):
    """An optimizer step ended; `logs` holds loss, lr, tokens/s, ... (called every `log_every`)."""


@hookspec
def t2t_validation_end(run, step, results):
    """Validation ended at `step`; `results` maps metric names (and 'loss', 'ppl') to values."""


@hookspec
def t2t_checkpoint_saved(run, step, path):
    """A checkpoint was written atomically to `path`."""


@hookspec
def t2t_run_end(run, summary):
    """The run ended (finished, stopped early or interrupted); `summary` says how."""


def reference_markdown() -> str:
    """The hook reference of docs/plugins.md, generated from the hookspecs above."""
    module = sys.modules[__name__]
    out = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if not name.startswith("t2t_"):
            continue
        args = ", ".join(inspect.signature(fn).parameters)
        doc = inspect.cleandoc(fn.__doc__ or "")
        kind = "registration: collects classes" if name.startswith("t2t_register_") else "training event: returns nothing"
        out.append(f"### `{name}({args})`\n\n*{kind}*\n\n{doc}\n")
    return "\n".join(out)
