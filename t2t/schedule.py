"""Learning-rate schedules as small stateful objects (exact resume through `state_dict`).

`lr(step, spent)` is the rate for the optimizer update numbered `step` (1-based), where `spent` is
the fraction of the run's time budget (train.max_time) used so far. The decaying schedules (cosine,
linear) end at min_lr when the first budget runs out: the steps (max_steps, or max_epochs worth of
batches) or the time, each counted from the end of warm-up. A run that stops at max_time has thus
annealed its rate, as budgeted training should (Li et al. 2020, "Budgeted training"); without
max_time they decay by steps alone.
"""

from __future__ import annotations

import math

from t2t.metric import improves
from t2t.options import TrainOptions


class Schedule:
    def __init__(self, o: TrainOptions, total_steps: int | None = None):
        self.o = o
        self.total = total_steps
        self.scale = 1.0            # plateau: current reduction
        self.best: float | None = None
        self.bad = 0
        self.decay_from: float | None = None    # budget fraction spent when warm-up ended

    def lr(self, step: int, spent: float = 0.0) -> float:
        o = self.o
        warm = min(1.0, step / o.warmup) if o.warmup else 1.0
        if o.schedule == "inverse_sqrt":
            return o.lr * min(step / o.warmup, math.sqrt(o.warmup / max(step, 1)))
        if o.schedule in ("cosine", "linear"):
            if o.warmup and step <= o.warmup:
                return o.lr * warm
            if self.decay_from is None:            # the first update after warm-up: decay starts now
                self.decay_from = min(spent, 0.99)
            total = max(self.total or step, o.warmup + 1)
            by_time = (spent - self.decay_from) / (1.0 - self.decay_from)
            progress = min(1.0, max((step - o.warmup) / (total - o.warmup), by_time))
            left = 0.5 * (1.0 + math.cos(math.pi * progress)) if o.schedule == "cosine" else 1.0 - progress
            return o.min_lr + (o.lr - o.min_lr) * left
        if o.schedule == "plateau":
            return max(o.lr * self.scale, o.min_lr) * warm
        return o.lr * warm

    def validated(self, value: float, higher_is_better: bool) -> None:
        """Plateau: lower the rate after `plateau_patience` validations without improvement."""
        if self.o.schedule != "plateau":
            return
        if improves(value, self.best, higher_is_better):
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad > self.o.plateau_patience:
            self.scale *= self.o.plateau_factor
            self.bad = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad": self.bad, "total": self.total,
                "decay_from": self.decay_from}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], state["bad"]
        self.total = state.get("total", self.total)
        self.decay_from = state.get("decay_from")
