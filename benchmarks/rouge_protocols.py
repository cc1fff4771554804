"""ROUGE under each multi-reference protocol, for a model and the task's baselines side by side.

Summaries with several references are scored three ways in the literature: against the best
reference (rouge-score's `score_multi`, the max), the mean over the references, or one named
reference. The same outputs give very different figures under each, so a comparison holds only
within one protocol. This decodes a split once (`t2t evaluate`, with the baselines), then scores
the model and every baseline under max, mean, each single reference, and the data's own target
(e.g. the sender's subject of an email), each row with its signature.

    python benchmarks/rouge_protocols.py recipes/aeslc_transformer.yaml --checkpoint runs/aeslc_transformer \\
        --baseline lead --data-dir ../shared/data

Writes benchmarks/results/rouge_protocols_{name}.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from t2t.evaluation import evaluate
from t2t.recipe import load_recipe
from t2t.registry import get_registry

HERE = Path(__file__).resolve().parent


def protocols(n_refs: int) -> list[tuple[str, dict]]:
    return ([("max", {"multi_ref": "max"}), ("mean", {"multi_ref": "mean"})] +
            [(f"reference {i}", {"reference": i}) for i in range(n_refs)])


def score(texts: list[str], refs: list[list[str]], options: dict) -> dict:
    from t2t_plugins.metrics import Rouge, RougeOptions
    metric = Rouge(RougeOptions(name="rouge", bootstrap=0, **options))
    result = metric.compute(texts, refs)
    return {"rouge1": round(result.details["rouge1"], 2), "rouge2": round(result.details["rouge2"], 2),
            "rougeL": round(result.details["rougeL"], 2), "signature": metric.signature()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--baseline", action="append", default=[])
    p.add_argument("--data-dir")
    p.add_argument("--name", help="results name (default: the run's folder name)")
    p.add_argument("--reuse", action="store_true", help="score the outputs RUN/eval already holds instead of decoding")
    p.add_argument("--cut", type=int, action="append", default=[],
                   help="also score each baseline cut to its first N words (how much of its score is length)")
    args = p.parse_args()
    recipe = load_recipe(args.recipe)
    out = Path(args.checkpoint) / "eval"
    if not (args.reuse and (out / f"{args.split}.hyp").exists()):
        report = evaluate(args.checkpoint, recipe, split=args.split, data_dir=args.data_dir, baselines=args.baseline)
        out = Path(report["outputs"]["report"]).parent
    from t2t.assembly import build_task
    examples = build_task(recipe, get_registry(), args.data_dir).examples(args.split)
    refs = [list(ex.refs) for ex in examples]
    own = [[ex.target] for ex in examples]
    systems = {"model": (out / f"{args.split}.hyp")}
    systems.update({b: out / f"{args.split}.{b}.hyp" for b in args.baseline})
    n_refs = min(len(r) for r in refs)
    rows = []
    outputs = {system: path.read_text(encoding="utf-8").splitlines() for system, path in systems.items()}
    for b in args.baseline:
        for n in args.cut:
            outputs[f"{b}, first {n} words"] = [" ".join(t.split()[:n]) for t in outputs[b]]
    for system, texts in outputs.items():
        for label, options in protocols(n_refs):
            rows.append({"system": system, "protocol": label, **score(texts, refs, options)})
        rows.append({"system": system, "protocol": "the data's own target", **score(texts, own, {})})
    name = args.name or Path(args.checkpoint).name
    result = {"recipe": args.recipe, "checkpoint": args.checkpoint, "split": args.split,
              "sentences": len(examples), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"rouge_protocols_{name}.json").write_text(json.dumps(result, indent=1))
    print("| system | protocol | ROUGE-1 | ROUGE-2 | ROUGE-L | signature |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['protocol']} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} | "
              f"`{r['signature']}` |")


if __name__ == "__main__":
    main()
