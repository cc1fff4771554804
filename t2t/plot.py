"""Pictures: training curves from a run's log, and attention heatmaps. Matplotlib, off-screen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from t2t.errors import T2TError


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, out: Path) -> Path:
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def read_log(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        raise T2TError(f"{path}: no training log here; is {run_dir} a run directory?")
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise T2TError(f"{path}:{lineno}: not valid JSON") from None
    return records


def plot_curves(run_dir: Path, out: Path) -> Path:
    """Training loss, validation loss and each validation metric against the step, one panel each."""
    records = read_log(run_dir)
    # a resumed run logs some steps twice; the later record wins
    train = {r["step"]: r for r in records if r.get("event") == "step"}
    valid = {r["step"]: r for r in records if r.get("event") == "valid"}
    if not train and not valid:
        raise T2TError(f"{run_dir}/log.jsonl has no steps or validations yet")
    skip = {"event", "step", "time", "epoch", "total_steps"}
    metrics = sorted({k for r in valid.values() for k, v in r.items() if k not in skip and isinstance(v, (int, float))})
    plt = _pyplot()
    panels = 1 + len(metrics)
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.4), squeeze=False)
    ax = axes[0][0]
    if train:
        steps = sorted(train)
        ax.plot(steps, [train[s]["loss"] for s in steps], label="train")
    if valid and "loss" in metrics:
        steps = sorted(valid)
        ax.plot(steps, [valid[s]["loss"] for s in steps], "o-", label="valid")
    ax.set_title("loss (nats/token)")
    ax.set_xlabel("step")
    ax.legend()
    for ax, name in zip(axes[0][1:], metrics):
        steps = sorted(s for s in valid if name in valid[s])
        ax.plot(steps, [valid[s][name] for s in steps], "o-")
        ax.set_title(f"valid {name}")
        ax.set_xlabel("step")
    return _save(plt, fig, out)


def plot_attention(weights, source: Sequence[str] | None, target: Sequence[str], out: Path) -> Path:
    """Heatmap of attention weights (T, S): output tokens down, source positions across."""
    plt = _pyplot()
    w = weights.detach().float().cpu().numpy() if hasattr(weights, "detach") else weights
    t, s = w.shape
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * s + 2), max(3, 0.35 * t + 1.5)))
    ax.imshow(w, aspect="auto", cmap="viridis", vmin=0.0)
    if source is not None and len(source) == s:
        ax.set_xticks(range(s))
        ax.set_xticklabels(source, rotation=90)
    else:
        ax.set_xlabel("source position")
    ax.set_yticks(range(t))
    ax.set_yticklabels(list(target)[:t])
    return _save(plt, fig, out)
