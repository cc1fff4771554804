"""Scoring files: any metrics over hypothesis and reference files, with paired bootstrap
significance between two systems (Koehn 2004, as sacreBLEU and Moses compute it)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from t2t.errors import T2TError
from t2t.metric import Metric
from t2t.registry import get_registry


def read_text_lines(path: str | Path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise T2TError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise T2TError(f"{path}: not valid UTF-8 (byte {e.start})") from None


def read_references(paths: Sequence[str | Path], expected: int, hyp_path: str | Path) -> list[list[str]]:
    """Reference files (one per reference set) -> per-sentence reference lists."""
    streams = []
    for p in paths:
        lines = read_text_lines(p)
        if len(lines) != expected:
            raise T2TError(f"{p} has {len(lines)} lines but {hyp_path} has {expected}; hypotheses and references "
                           f"must pair up line by line")
        streams.append(lines)
    return [list(refs) for refs in zip(*streams)]


def paired_bootstrap(metric: Metric, base: Sequence[str], system: Sequence[str], refs: Sequence[Sequence[str]],
                     samples: int = 1000, seed: int = 12345) -> dict:
    """p-value that `system` differs from `base` by chance, and the system's 95% interval.

    The same resampled test sets score both systems; the statistic is the absolute score
    difference, compared with the resampled differences shifted to mean zero."""
    if not metric.decomposes:
        raise T2TError(f"metric '{metric.name}' has no per-sentence statistics; it cannot be bootstrapped")
    base_stats = np.asarray(metric.sentence_stats(list(base), [list(r) for r in refs]), dtype=np.float64)
    sys_stats = np.asarray(metric.sentence_stats(list(system), [list(r) for r in refs]), dtype=np.float64)
    real = abs(metric.score_stats(sys_stats.sum(0)) - metric.score_stats(base_stats.sum(0)))
    idx = np.random.default_rng(seed).choice(len(base), size=(samples, len(base)), replace=True)
    base_scores = np.array([metric.score_stats(base_stats[i].sum(0)) for i in idx])
    sys_scores = np.array([metric.score_stats(sys_stats[i].sum(0)) for i in idx])
    diffs = np.abs(sys_scores - base_scores)
    p = (int(np.sum(diffs - diffs.mean() > real)) + 1) / (samples + 1)
    low, high = np.percentile(sys_scores, [2.5, 97.5])
    return {"p_value": p, "system_mean": float(sys_scores.mean()), "system_ci95": [float(low), float(high)],
            "samples": samples, "seed": seed}


def score_files(hyp: str | Path, refs: Sequence[str | Path], metrics: Sequence[str], hyp2: str | Path | None = None,
                bootstrap: int = 1000, seed: int = 12345, registry=None) -> dict:
    """Scores of `hyp` (and `hyp2`) against the reference files; significance when two systems."""
    registry = get_registry(registry)
    if not metrics:
        raise T2TError("no metrics given; e.g. --metrics bleu,chrf")
    hyps = read_text_lines(hyp)
    references = read_references(refs, len(hyps), hyp)
    hyps2 = read_text_lines(hyp2) if hyp2 else None
    if hyps2 is not None and len(hyps2) != len(hyps):
        raise T2TError(f"{hyp2} has {len(hyps2)} lines but {hyp} has {len(hyps)}")
    report = {"hyp": str(hyp), "refs": [str(r) for r in refs], "sentences": len(hyps), "metrics": {}}
    lines = [f"{len(hyps)} sentences, {len(refs)} reference set(s)"]
    for name in metrics:
        m = registry.get("metrics", name)()
        s = m.compute(hyps, references)
        entry = {"system": s.to_dict()}
        line = f"{name:<12} {s.value:8.2f}"
        if hyps2 is not None:
            s2 = m.compute(hyps2, references)
            entry["system2"] = s2.to_dict()
            line += f"   system2 {s2.value:8.2f}"
            if m.decomposes and bootstrap:
                sig = paired_bootstrap(m, hyps, hyps2, references, bootstrap, seed)
                entry["paired_bootstrap"] = sig
                line += f"   p = {sig['p_value']:.4f}"
        report["metrics"][name] = entry
        lines.append(f"{line}   {s.signature}")
    report["text"] = "\n".join(lines)
    return report
