"""Built-in training loggers: a JSON Lines log of every logged step and validation (always), and
the trackers a recipe names under `loggers:`: `tensorboard` (event files in the run folder; the
trainer adds it under `train.tensorboard: true`), `mlflow` (MLflow's tracking store: its default, a local database, needs
no server) and `wandb` (Weights & Biases, online or offline). Each tracker is an optional extra
(`pip install 't2t[mlflow]'`, `t2t[wandb]`, `t2t[tensorboard]`); a resumed run goes on in the
same tracker run (its id is kept in the run folder)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from typing import Literal, Optional

import t2t
from t2t import checkpoint as ckpt
from t2t.logger import Logger, flat, scalars
from t2t.options import LoggerOptions, option

log = logging.getLogger("t2t")


def _write(run, record: dict) -> None:
    if run.rank != 0:
        return
    with open(run.directory / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


def _need(module: str, extra: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise t2t.T2TError(f"loggers: {extra} needs the {module} package: pip install 't2t[{extra}]'") from None


def _run_name(run, given: str | None) -> str:
    return given or run.directory.resolve().name


def _kept_id(run, file: str, new) -> tuple[str, bool]:
    """(the tracker's run id, whether it is new): the one kept in the run folder where the run is
    resumed (it goes on in it), else a new one, kept there."""
    path = run.directory / file
    if run.resumed and path.exists():
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))["id"]
            if isinstance(kept, str) and kept:
                return kept, False
        except (ValueError, KeyError, TypeError):
            pass
        log.warning(f"{path}: damaged, so the resumed run goes into a new tracker run (the old one is left as it is)")
    run_id = new()
    ckpt.atomic_write(path, lambda f: f.write(json.dumps({"id": run_id}).encode()))
    return run_id, True


# --------------------------------------------------------------------------- TensorBoard


class TensorBoard(Logger):
    """Event files under RUN/tensorboard (`tensorboard --logdir runs`)."""

    name = "tensorboard"

    def __init__(self, options=None):
        super().__init__(options)
        self.writer = None

    @t2t.hookimpl
    def t2t_run_start(self, run):
        SummaryWriter = _need("torch.utils.tensorboard", "tensorboard").SummaryWriter
        self.writer = SummaryWriter(str(run.directory / "tensorboard"))

    def _add(self, values, prefix, step):
        for k, v in scalars(values, prefix).items():
            self.writer.add_scalar(k, v, step)

    @t2t.hookimpl
    def t2t_step_end(self, run, step, logs):
        self._add(logs, "train", step)

    @t2t.hookimpl
    def t2t_validation_end(self, run, step, results):
        self._add(results, "valid", step)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# --------------------------------------------------------------------------- MLflow


@dataclasses.dataclass(frozen=True, kw_only=True)
class MLflowOptions(LoggerOptions):
    tracking_uri: Optional[str] = option(None, help="where MLflow keeps runs (default: MLflow's own, "
                                         "$MLFLOW_TRACKING_URI or a local database in the working folder)")
    experiment: str = option("t2t", help="the MLflow experiment the run goes into")
    run_name: Optional[str] = option(None, help="the MLflow run's name (default: the run folder's name)")


class MLflow(Logger):
    """An MLflow run: the recipe as parameters, train/* and valid/* metrics by step, the summary at the end."""

    name = "mlflow"
    Options = MLflowOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.client = self.run_id = None

    @t2t.hookimpl
    def t2t_run_start(self, run):
        tracking = _need("mlflow.tracking", "mlflow")
        o = self.options
        self.client = tracking.MlflowClient(tracking_uri=o.tracking_uri)
        found = self.client.get_experiment_by_name(o.experiment)
        experiment = found.experiment_id if found else self.client.create_experiment(o.experiment)

        def create():
            return self.client.create_run(experiment, run_name=_run_name(run, o.run_name),
                                          tags={"t2t.run_dir": str(run.directory.resolve())}).info.run_id
        self.run_id, new = _kept_id(run, "mlflow_run.json", create)
        if new:
            from mlflow.entities import Param
            params = [Param(k, json.dumps(v) if not isinstance(v, str) else v)
                      for k, v in flat(run.recipe.to_dict()).items()]
            for i in range(0, len(params), 100):             # MLflow takes at most 100 a batch
                self.client.log_batch(self.run_id, params=params[i: i + 100])
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def _log(self, values, prefix, step):
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in scalars(values, prefix).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    @t2t.hookimpl
    def t2t_step_end(self, run, step, logs):
        self._log(logs, "train", step)

    @t2t.hookimpl
    def t2t_validation_end(self, run, step, results):
        self._log(results, "valid", step)

    @t2t.hookimpl
    def t2t_run_end(self, run, summary):
        if summary.get("best") is not None:
            self.client.log_metric(self.run_id, "best", float(summary["best"]), step=int(summary["step"]))
        for key in ("status", "best_checkpoint", "metric"):
            if summary.get(key) is not None:
                self.client.set_tag(self.run_id, f"t2t.{key}", str(summary[key]))
        self.client.set_terminated(self.run_id, "KILLED" if summary.get("status") == "interrupted" else "FINISHED")
        self.run_id = None

    def close(self):
        if self.run_id is not None:                   # the run ended in an error
            self.client.set_terminated(self.run_id, "FAILED")
            self.run_id = None


# --------------------------------------------------------------------------- Weights & Biases


@dataclasses.dataclass(frozen=True, kw_only=True)
class WandbOptions(LoggerOptions):
    project: str = option("t2t", help="the W&B project")
    entity: Optional[str] = option(None, help="the W&B team or user (default: W&B's own)")
    mode: Optional[Literal["online", "offline", "disabled"]] = option(
        None, help="online, offline (written under the run folder; `wandb sync` uploads it later) or disabled "
                   "(default: $WANDB_MODE, else online)")
    run_name: Optional[str] = option(None, help="the W&B run's name (default: the run folder's name)")


class Wandb(Logger):
    """A Weights & Biases run: the recipe as its config, train/* and valid/* by step, the summary at the end."""

    name = "wandb"
    Options = WandbOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.run = None

    @t2t.hookimpl
    def t2t_run_start(self, run):
        wandb = _need("wandb", "wandb")
        o = self.options
        run_id, _ = _kept_id(run, "wandb_run.json", lambda: uuid.uuid4().hex[:8])
        self.run = wandb.init(project=o.project, entity=o.entity, mode=o.mode, name=_run_name(run, o.run_name),
                              id=run_id, resume="allow", dir=str(run.directory), config=run.recipe.to_dict(),
                              reinit="create_new", settings=wandb.Settings(console="off", silent=True))

    @t2t.hookimpl
    def t2t_step_end(self, run, step, logs):
        self.run.log(scalars(logs, "train"), step=step)

    @t2t.hookimpl
    def t2t_validation_end(self, run, step, results):
        self.run.log(scalars(results, "valid"), step=step)

    @t2t.hookimpl
    def t2t_run_end(self, run, summary):
        self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
        self.run.finish(exit_code=1 if summary.get("status") == "interrupted" else 0)
        self.run = None

    def close(self):
        if self.run is not None:
            self.run.finish(exit_code=1)
            self.run = None


# --------------------------------------------------------------------------- the run's own log


@t2t.hookimpl
def t2t_run_start(run):
    _write(run, {"event": "start", "step": run.step, "resumed": run.resumed})


@t2t.hookimpl
def t2t_step_end(run, step, logs):
    _write(run, {"event": "step", "step": step, **logs})


@t2t.hookimpl
def t2t_validation_end(run, step, results):
    _write(run, {"event": "valid", "step": step, **results})


@t2t.hookimpl
def t2t_checkpoint_saved(run, step, path):
    _write(run, {"event": "checkpoint", "step": step, "path": str(path)})


@t2t.hookimpl
def t2t_run_end(run, summary):
    _write(run, {"event": "end", **summary})


@t2t.hookimpl
def t2t_register_loggers(register):
    register(TensorBoard)
    register(MLflow)
    register(Wandb)
