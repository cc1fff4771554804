"""Learning-rate schedules."""

import json

import pytest

from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train


def test_schedules():
    from t2t.options import TrainOptions
    from t2t.schedule import Schedule
    inv = Schedule(TrainOptions(schedule="inverse_sqrt", lr=1.0, warmup=100))
    assert inv.lr(50) == pytest.approx(0.5) and inv.lr(100) == pytest.approx(1.0) and inv.lr(400) == pytest.approx(0.5)
    cos = Schedule(TrainOptions(schedule="cosine", lr=1.0, warmup=10, min_lr=0.1), total_steps=110)
    assert cos.lr(5) == pytest.approx(0.5) and cos.lr(60) == pytest.approx(0.55) and cos.lr(110) == pytest.approx(0.1)
    lin = Schedule(TrainOptions(schedule="linear", lr=1.0, warmup=10), total_steps=110)
    assert lin.lr(5) == pytest.approx(0.5) and lin.lr(35) == pytest.approx(0.75) and lin.lr(110) == pytest.approx(0.0)
    # a time budget that runs out before the steps do decays the rate by time spent
    assert lin.lr(35, spent=0.5) == pytest.approx(0.5) and lin.lr(35, spent=0.1) == pytest.approx(0.75)
    assert cos.lr(20, spent=0.5) == pytest.approx(0.55) and cos.lr(20, spent=1.0) == pytest.approx(0.1)
    late = Schedule(TrainOptions(schedule="linear", lr=1.0, warmup=10), total_steps=10_000)
    assert late.lr(10, spent=0.2) == pytest.approx(1.0)       # warm-up took a fifth of the time
    assert late.lr(11, spent=0.2) == pytest.approx(1.0, abs=1e-3) and late.lr(12, spent=0.6) == pytest.approx(0.5)
    resumed = Schedule(TrainOptions(schedule="linear", lr=1.0, warmup=10), total_steps=10_000)
    resumed.load_state_dict(late.state_dict())
    assert resumed.lr(13, spent=0.9) == pytest.approx(0.125)
    plateau = Schedule(TrainOptions(schedule="plateau", lr=1.0, plateau_factor=0.5, plateau_patience=1))
    for value in (3.0, 2.0, 2.5, 2.6):                   # lower is better: two validations without improvement
        plateau.validated(value, higher_is_better=False)
    assert plateau.lr(1) == pytest.approx(0.5)
    again = Schedule(TrainOptions(schedule="plateau", lr=1.0))
    again.load_state_dict(plateau.state_dict())
    assert again.lr(1) == pytest.approx(0.5)
    assert Schedule(TrainOptions(schedule="constant", lr=2.0, warmup=4)).lr(1) == pytest.approx(0.5)


def test_linear_schedule_decays_over_the_time_budget(tmp_path, registry, monkeypatch):
    # a clock that advances 6 s per update: max_time 1 minute ends the run after 10 updates, and the
    # rate of update k is lr * (1 - 6 (k - 1) / 60) (from k = 2 on; by steps alone, of which max_epochs
    # allows far more, it would be lr * (1 - k / total))
    from t2t.trainer import Trainer
    monkeypatch.setattr(Trainer, "_elapsed", lambda self: 6.0 * self.step)
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={
        "max_epochs": 50, "max_time": 1.0, "schedule": "linear", "lr": 1e-3, "log_every": 1}))
    summary = train(r)
    assert summary["status"] == "max_time" and summary["step"] == 10
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [row for row in rows if row["event"] == "step"]
    total = steps[0]["total_steps"]
    assert total > 100
    assert [row["lr"] for row in steps] == pytest.approx([1e-3 * (1 - max(k / total, 0.1 * (k - 1))) for k in range(1, 11)])
