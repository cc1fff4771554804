"""Built-in training loggers, as training-event hook implementations: a JSON Lines log of every
logged step and validation (always), and TensorBoard event files (when `train.tensorboard`)."""

from __future__ import annotations

import json
import time

import t2t


def _write(run, record: dict) -> None:
    if run.rank != 0:
        return
    with open(run.directory / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


_writers: dict = {}


def _tensorboard(run):
    if not run.recipe.train.tensorboard or run.rank != 0:
        return None
    key = str(run.directory)
    if key not in _writers:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise t2t.T2TError("train.tensorboard needs the tensorboard package: pip install tensorboard") from None
        _writers[key] = SummaryWriter(str(run.directory / "tensorboard"))
    return _writers[key]


@t2t.hookimpl
def t2t_run_start(run):
    _write(run, {"event": "start", "step": run.step, "resumed": run.resumed})
    _tensorboard(run)


@t2t.hookimpl
def t2t_step_end(run, step, logs):
    _write(run, {"event": "step", "step": step, **logs})
    tb = _tensorboard(run)
    if tb:
        for k, v in logs.items():
            if isinstance(v, (int, float)):
                tb.add_scalar(f"train/{k}", v, step)


@t2t.hookimpl
def t2t_validation_end(run, step, results):
    _write(run, {"event": "valid", "step": step, **results})
    tb = _tensorboard(run)
    if tb:
        for k, v in results.items():
            if isinstance(v, (int, float)):
                tb.add_scalar(f"valid/{k}", v, step)


@t2t.hookimpl
def t2t_checkpoint_saved(run, step, path):
    _write(run, {"event": "checkpoint", "step": step, "path": str(path)})


@t2t.hookimpl
def t2t_run_end(run, summary):
    _write(run, {"event": "end", **summary})
    tb = _writers.pop(str(run.directory), None)
    if tb:
        tb.close()
