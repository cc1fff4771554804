"""Cross-validated choice of run and decoding settings: tune on part of a split, score on the rest.

For data with no development set apart from the split a figure is reported on (AESLC: the
annotated subject lines exist only for the validation emails), choosing decoding settings on that
split would flatter the figure. This benchmark splits it into K interleaved folds (example i is in
fold i mod K); each fold's hypotheses come from the setting that scored best on the other folds,
so no hypothesis is chosen with its own references in view. The combined hypotheses are scored on
the whole split and recorded as a row of benchmarks/quality.md.

    python benchmarks/crossfold.py recipes/aeslc_transformer.yaml --checkpoint runs/aeslc_a \\
        --grid decode.min_len=0 decode.min_len=4 "decode.min_len=4 decode.length_penalty=2.0" \\
        --name aeslc_crossfold --data-dir ../shared/data

A setting is a space-separated list of recipe overrides; with several checkpoints (runs), every
run is tried with every setting, so the choice between trained models is cross-validated too.
The selection criterion is the value of the recipe's first metric (ROUGE-1 for `rouge`, as
`train.valid_metric: rouge` uses it), or with `--select` the mean of some of its sub-scores.
Every example is scored once, by the choice of the folds it is not in. `--candidate` adds a
checkpoint with settings of its own (e.g. every checkpoint of a run, with the recipe's decoding).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (same folder: its row format, table and machine description)


def folds_of(n: int, k: int) -> list[list[int]]:
    return [list(range(f, n, k)) for f in range(k)]


def choose(scores: dict[str, list[float]], fold: int, higher_is_better: bool) -> str:
    """The setting whose summed score over the folds other than `fold` is best (ties: first given)."""
    def rest(setting):
        return sum(v for f, v in enumerate(scores[setting]) if f != fold)
    return (max if higher_is_better else min)(scores, key=rest)


def criterion(score, select: list[str]) -> float:
    """The score's value, or the mean of the named sub-scores (its details)."""
    if not select:
        return score.value
    missing = [k for k in select if not isinstance(score.details.get(k), float)]
    if missing:
        raise SystemExit(f"--select: metric {score.name} has no sub-score {missing[0]}; it has "
                         f"{', '.join(k for k, v in score.details.items() if isinstance(v, float))}")
    return sum(score.details[k] for k in select) / len(select)


def checkpoint_step(checkpoint: str, summary: dict):
    """The update a candidate's weights are from: a checkpoint file's step, or for a run directory
    (which stands for its average where it kept one, else its best checkpoint) the run's best step."""
    m = re.fullmatch(r"step_0*(\d+)\.pt", Path(checkpoint).name)
    if m:
        return int(m.group(1))
    if Path(checkpoint).is_dir() and summary.get("average_checkpoint"):
        return summary["average_checkpoint"]
    return summary.get("best_step", summary["step"])


def reusable(out: Path, split: str, identity: dict) -> dict | None:
    """The report of an earlier decoding in `out` with the same recipe, overrides and checkpoint,
    made after the checkpoint file was written; None where there is none."""
    try:
        report = json.loads((out / f"{split}.report.json").read_text(encoding="utf-8"))
        same = json.loads((out / "crossfold.json").read_text(encoding="utf-8")) == identity
        fresh = Path(report["checkpoint"]).stat().st_mtime < (out / f"{split}.report.json").stat().st_mtime
    except (OSError, ValueError, KeyError):
        return None
    return report if same and fresh else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="recipe overrides for every setting")
    p.add_argument("--checkpoint", nargs="+", default=[],
                   help="run directories or checkpoint files (each is tried with every setting)")
    p.add_argument("--grid", nargs="+", default=[""], help="settings to choose from (each: overrides)")
    p.add_argument("--candidate", action="append", default=[], metavar="'CHECKPOINT [OVERRIDES]'",
                   help="one more candidate outside the grid: a checkpoint and its own settings")
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--split", default="test")
    p.add_argument("--name", required=True, help="row name in benchmarks/quality.md")
    p.add_argument("--data-dir", default=os.environ.get("T2T_DATA"))
    p.add_argument("--device", default="auto")
    p.add_argument("--select", default="",
                   help="comma list of the metric's sub-scores whose mean is the criterion (e.g. "
                        "rouge1,rouge2,rougeL); default: the metric's value")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--reuse", action="store_true",
                   help="reuse the hypotheses of an earlier call for the same checkpoint, recipe and setting")
    args = p.parse_args()
    candidates = [(c, s) for c in args.checkpoint for s in args.grid]
    candidates += [(c.split(maxsplit=1) + [""])[:2] for c in args.candidate]
    if not candidates:
        sys.exit("nothing to choose from: give --checkpoint or --candidate")
    if args.folds < 2:
        sys.exit("--folds must be at least 2")

    import torch
    import t2t
    from t2t.evaluation import evaluate, metric_objects, run_dir_of, score_texts
    from t2t.assembly import build_task
    from t2t.registry import get_registry
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = get_registry()
    command = "python benchmarks/crossfold.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    ran = quality.commit()
    base = t2t.load_recipe(args.recipe, args.overrides)
    examples = build_task(base, registry, args.data_dir).examples(args.split)
    refs = [ex.refs for ex in examples]
    folds = folds_of(len(examples), args.folds)
    select = [k for k in args.select.split(",") if k]

    hyps: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}          # candidate -> the criterion on each fold
    whole: dict[str, dict] = {}                  # candidate -> its figures on the whole split (for the record)
    runs: dict[str, Path] = {}                   # candidate -> its run directory
    started = time.time()
    for checkpoint, setting in candidates:
        run = run_dir_of(Path(checkpoint)) if Path(checkpoint).is_file() else Path(checkpoint)
        key = f"{checkpoint} {setting}".strip()
        overrides = [*args.overrides, *shlex.split(setting)]
        recipe = t2t.load_recipe(args.recipe, overrides)
        out = run / "crossfold" / args.split / hashlib.sha1(key.encode()).hexdigest()[:10]
        identity = {"recipe": Path(args.recipe).read_text(encoding="utf-8"), "overrides": overrides,
                    "checkpoint": str(checkpoint), "data_dir": args.data_dir}
        report = reusable(out, args.split, identity) if args.reuse else None
        if report is None:
            report = evaluate(checkpoint, recipe, split=args.split, data_dir=args.data_dir,
                              device=args.device, out_dir=out, registry=registry)
            (out / "crossfold.json").write_text(json.dumps(identity), encoding="utf-8")
        texts = (out / f"{args.split}.hyp").read_text(encoding="utf-8").splitlines()
        if len(texts) != len(examples):
            sys.exit(f"'{key}': {len(texts)} hypotheses for {len(examples)} examples")
        hyps[key], runs[key] = texts, run
        metric = metric_objects(recipe, registry)[0]
        scores[key] = [criterion(metric.compute([texts[j] for j in fold], [refs[j] for j in fold]), select)
                       for fold in folds]
        whole[key] = quality.figures(report["metrics"])
        by_fold = ", ".join(f"{v:.2f}" for v in scores[key])
        print(f"[{key}] {args.select or metric.name} by fold: {by_fold}", flush=True)

    higher = metric_objects(base, registry)[0].higher_is_better
    chosen = [choose(scores, f, higher) for f in range(args.folds)]
    combined = [""] * len(examples)
    for fold, setting in zip(folds, chosen):
        for j in fold:
            combined[j] = hyps[setting][j]
    out = runs[chosen[0]] / "crossfold" / args.split
    (out / f"{args.split}.crossfold.hyp").write_text("".join(h + "\n" for h in combined), encoding="utf-8")
    final = {k: s.to_dict() for k, s in score_texts(metric_objects(base, registry), combined, refs).items()}
    words = sum(len(h.split()) for h in combined) / max(len(combined), 1)

    trained = {r: quality.trained(r) for r in dict.fromkeys(runs[c] for c in chosen)}   # the runs chosen, once each
    summaries = list(trained.values())
    steps = [checkpoint_step(c.split()[0], trained[runs[c]]) for c in chosen]
    row = {
        "recipe": args.recipe,
        "split": quality.split_label(base, args.split) + f", {args.folds}-fold cross-validated choice",
        "command": command,
        "metrics": quality.figures(final),
        "baselines": {},
        "avg_words": round(words, 1),
        "train_minutes": " / ".join(str(round(s["time_s"] / 60, 1)) for s in summaries),
        "steps": " / ".join(str(n) for n in dict.fromkeys(steps)),      # of the checkpoints chosen
        "stopped": " / ".join(s["status"] for s in summaries), "eval_minutes": round((time.time() - started) / 60, 1),
        "machine": quality.machine(args.threads), "date": time.strftime("%Y-%m-%d"), "commit": ran,
        "crossfold": {"criterion": args.select or base.metrics[0].name, "chosen": chosen,
                      "fold_scores": scores, "whole_split": whole},
    }
    quality.record(args.name, row)
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
