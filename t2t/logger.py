"""Training loggers: where a run's steps, validations and end are recorded besides `log.jsonl`
(MLflow, Weights & Biases, TensorBoard ...). A logger plugin subclasses `Logger`.

A recipe names the loggers of a run (`loggers: [mlflow, {name: wandb, project: x}]`). The trainer
makes one instance of each on the first worker and registers it, for the run, as a plugin of the
training-event hooks (`t2t_run_start`, `t2t_step_end`, `t2t_validation_end`,
`t2t_checkpoint_saved`, `t2t_run_end`): a logger implements those it needs as methods marked
with `t2t.hookimpl`.
"""

from __future__ import annotations

from typing import ClassVar

from t2t.options import LoggerOptions


class Logger:
    """One run's record in a tracker. Subclasses set `name`, optionally `Options`, and implement
    training-event hooks as methods."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[LoggerOptions]] = LoggerOptions

    def __init__(self, options: LoggerOptions | None = None):
        self.options = options or self.Options(name=self.name)

    def close(self) -> None:
        """Called when the run's trainer is done with it, also after an error (`t2t_run_end` may
        not have come): end the tracker's run if it is still open."""


def scalars(values: dict, prefix: str) -> dict[str, float]:
    """The numbers of a step's or a validation's values, keyed `prefix/name` (booleans and text left out)."""
    return {f"{prefix}/{k}": float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def flat(d: dict, prefix: str = "") -> dict[str, object]:
    """A nested recipe dict as `section.key` -> value (lists and scalars as they are)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out
