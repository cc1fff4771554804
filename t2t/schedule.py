"""Learning-rate schedules as small stateful objects (exact resume through `state_dict`).

`lr(step)` is the rate for the optimizer update numbered `step` (1-based).
"""

from __future__ import annotations

import math

from t2t.options import TrainOptions


class Schedule:
    def __init__(self, o: TrainOptions, total_steps: int | None = None):
        self.o = o
        self.total = total_steps
        self.scale = 1.0            # plateau: current reduction
        self.best: float | None = None
        self.bad = 0

    def lr(self, step: int) -> float:
        o = self.o
        warm = min(1.0, step / o.warmup) if o.warmup else 1.0
        if o.schedule == "inverse_sqrt":
            return o.lr * min(step / o.warmup, math.sqrt(o.warmup / max(step, 1)))
        if o.schedule == "cosine":
            if o.warmup and step <= o.warmup:
                return o.lr * warm
            total = max(self.total or step, o.warmup + 1)
            progress = min(1.0, (step - o.warmup) / (total - o.warmup))
            return o.min_lr + (o.lr - o.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if o.schedule == "plateau":
            return max(o.lr * self.scale, o.min_lr) * warm
        return o.lr * warm

    def validated(self, value: float, higher_is_better: bool) -> None:
        """Plateau: lower the rate after `plateau_patience` validations without improvement."""
        if self.o.schedule != "plateau":
            return
        better = self.best is None or (value > self.best if higher_is_better else value < self.best)
        if better:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad > self.o.plateau_patience:
            self.scale *= self.o.plateau_factor
            self.bad = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad": self.bad, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], state["bad"]
        self.total = state.get("total", self.total)
