"""Quality benchmark: train a recipe, evaluate it (with the task's baselines), record the figure.

    python benchmarks/quality.py recipes/multi30k_de_en_transformer.yaml --data-dir ../shared/data
    python benchmarks/quality.py RECIPE --baseline lead --device cuda

Each run updates its row in benchmarks/results/quality.json and regenerates benchmarks/quality.md:
the recipe, its metric values (and the baselines'), the command, wall time of training and of
evaluation, the machine and the date. Runs stop at the recipe's `train.max_time`. With `--ensemble
RUN...` the recipe's run is decoded together with other runs of it (e.g. other `train.seed`s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "quality.json"


def machine(threads: int | None = None) -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from t2t.device import fast_bf16
    threads = threads or torch.get_num_threads()
    # the vector unit decides the figures: without native bf16 the bf16 recipes train in fp32
    isa = f"{torch.backends.cpu.get_cpu_capability()}{', native bf16' if fast_bf16(torch.device('cpu')) else ''}"
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu} ({isa}), {threads} threads{gpu}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--data-dir", default=os.environ.get("T2T_DATA"))
    p.add_argument("--split", default="test")
    p.add_argument("--baseline", action="append", default=[])
    p.add_argument("--device", default=None)
    p.add_argument("--name", help="row name (default: the recipe's file name)")
    p.add_argument("--evaluate-only", action="store_true", help="skip training; evaluate the existing run")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="RUN",
                   help="decode with the ensemble of the recipe's run and these trained runs; the row's "
                        "training time is the members' sum")
    args = p.parse_args()

    import t2t
    from t2t.evaluation import evaluate
    from t2t.trainer import train
    recipe = t2t.load_recipe(args.recipe, args.overrides)
    name = args.name or Path(args.recipe).stem
    command = "python benchmarks/quality.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    ran = commit()                       # the code that trains: later commits must not claim the row
    if args.evaluate_only:               # the row still tells of the training: its log's summary
        summary = trained(Path(recipe.output_dir))
        train_s = summary["time_s"]
    else:
        started = time.time()
        summary = train(recipe, data_dir=args.data_dir, device=args.device, overwrite=True)
        train_s = time.time() - started
    for run in args.ensemble:
        train_s += trained(Path(run))["time_s"]
    members = [recipe.output_dir, *args.ensemble]
    started = time.time()
    report = evaluate(members, recipe, split=args.split, data_dir=args.data_dir,
                      device=args.device or "auto", baselines=args.baseline)
    eval_s = time.time() - started
    row = {
        "recipe": args.recipe, "split": split_label(recipe, args.split),
        "command": command,
        "metrics": figures(report.get("metrics", {})),
        "baselines": {b: {**figures(m), **({"avg_words": round(m["avg_words"], 1)} if "avg_words" in m else {})}
                      for b, m in report.get("baselines", {}).items()},
        "reference_ppl": round(report.get("reference_ppl", float("nan")), 2),
        "avg_words": round(report.get("avg_words", float("nan")), 1),
        "train_minutes": round(train_s / 60, 1), "steps": summary["step"],
        "stopped": summary["status"], "eval_minutes": round(eval_s / 60, 1),
        "machine": machine(recipe.train.threads), "date": time.strftime("%Y-%m-%d"),
        "commit": ran,
        **({"ensemble": members} if args.ensemble else {}),
    }
    record(name, row)
    print(json.dumps(row, indent=1))


def split_label(recipe, split: str) -> str:
    """The split's name, with the data's own name for it where the recipe maps one (test = valid)."""
    stored = (getattr(recipe.data, "splits", None) or {}).get(split, split)
    return split if stored == split else f"{split} = {stored}"


def record(name: str, row: dict) -> None:
    """Store `row` under `name` in results/quality.json and regenerate quality.md."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[name] = row
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    write_table(results)


def trained(run_dir: Path) -> dict:
    """The last training session's summary (the `end` event of the run's log.jsonl)."""
    from t2t.plot import read_log
    ends = [e for e in read_log(run_dir) if e.get("event") == "end"]
    if not ends:
        sys.exit(f"--evaluate-only: {run_dir}/log.jsonl holds no finished training; train the recipe first")
    return ends[-1]


def commit() -> str:
    """HEAD, with "+modified" when tracked files other than the results differ from it (an edited
    recipe or module makes the row irreproducible from the commit alone)."""
    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=HERE).stdout.strip()
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ":/",
                  ":(exclude,top)benchmarks/results", ":(exclude,top)benchmarks/quality.md")
    return git("rev-parse", "--short", "HEAD") + ("+modified" if changed else "")


def figures(metrics: dict) -> dict:
    """A report's metrics, rounded, with their sub-scores (e.g. ROUGE-1/2/L)."""
    return {k: {"value": round(v["value"], 2), "signature": v.get("signature", ""),
                **{d: round(x, 2) for d, x in v.get("details", {}).items() if isinstance(x, float)}}
            for k, v in metrics.items() if isinstance(v, dict) and "value" in v}


# The row that stands for each recipe as it is now (the README's figure); the rest is history.
STANDING = {
    "recipes/multi30k_de_en_transformer.yaml": "multi30k_de_en_transformer",
    "recipes/multi30k_en_de_transformer.yaml": "multi30k_en_de_lin",
    "recipes/multi30k_de_en_rnn.yaml": "multi30k_de_en_rnn_lin3e3_drop02",
    "recipes/aeslc_transformer.yaml": "aeslc_transformer_recipe",
    "recipes/samsum_transformer.yaml": "samsum_a_mbr8",
    "recipes/scitldr_transformer.yaml": "scitldr_heldout_lowercase_minlen25",
    "recipes/dialogsum_transformer.yaml": "dialogsum_transformer",
    "recipes/sgd_transformer.yaml": "sgd_heldout_minlen10",
    "recipes/dailydialog_transformer.yaml": "dailydialog_heldout_minlen10",
    "recipes/selfdialogue_transformer.yaml": "selfdialogue_heldout_minlen10",
    "recipes/chitchat_transformer.yaml": "chitchat_rerun_minlen24",
    "recipes/speech_digits.yaml": "speech_digits_an4_encoder",
    "recipes/speech_an4_digits_encoder.yaml": "an4_digits_encoder",
    "recipes/speech_digits_multi.yaml": "speech_digits_multi",
    "recipes/speech_an4.yaml": "speech_an4",
}


def machine_label(text: str) -> str:
    if text.startswith("AMD"):
        return "A" if "AVX512" in text else "B" if "AVX2" in text else text
    return "C" if text.startswith("Intel") else text


def standing_table(results: dict) -> list[str]:
    """One row per recipe: its figure, split, scoring protocol and baseline under the same protocol."""
    lines = ["## The recipes as they stand", "",
             "One row per recipe: the run that stands for it now. A baseline shares the model's scoring protocol "
             "(the signature); `-` where none was measured. Machines (2 cores each): A is an AMD EPYC with native bf16 "
             "(AVX-512), B an AMD EPYC with AVX2 only, C an Intel Xeon with AVX-512 and AMX.", "",
             "| recipe | figure | split | protocol | baseline, same protocol | train min | machine | row |",
             "|---|---|---|---|---|---|---|---|"]
    for recipe, name in STANDING.items():
        r = results.get(name)
        if r is None:
            lines.append(f"| `{recipe}` | not measured yet | | | | | | {name} |")
            continue
        figure = "; ".join(_metric_text(k, v) for k, v in r["metrics"].items())
        protocol = "; ".join(sorted({v.get("signature", "") for v in r["metrics"].values() if v.get("signature")}))
        base = "; ".join(f"{b}: " + "; ".join(_metric_text(k, v) for k, v in m.items() if isinstance(v, dict))
                         for b, m in r.get("baselines", {}).items()) or "-"
        protocol = protocol.replace("|", "\\|")             # inside a table cell
        lines.append(f"| `{recipe}` | {figure} | {r['split']} | `{protocol}` | {base} | {r['train_minutes']} | "
                     f"{machine_label(r['machine'])} | {name} |")
    return lines + [""]


def protocol_tables() -> list[str]:
    """The tables of benchmarks/rouge_protocols.py (and extractive_oracle.py) runs, one per run."""
    lines = []
    for path in sorted((HERE / "results").glob("rouge_protocols_*.json")):
        r = json.loads(path.read_text())
        lines += ["", f"## ROUGE under each protocol: `{r['recipe']}`, {r['split']} ({r['sentences']} examples, "
                      f"{r['date']})", "",
                  f"`python benchmarks/rouge_protocols.py {r['recipe']} --checkpoint {r['checkpoint']} ...`; "
                  "every system is scored under every protocol, so compare within a protocol only.", "",
                  "| system | protocol | ROUGE-1 | ROUGE-2 | ROUGE-L |", "|---|---|---|---|---|"]
        lines += [f"| {x['system']} | {x['protocol']} | {x['rouge1']:.2f} | {x['rouge2']:.2f} | {x['rougeL']:.2f} |"
                  for x in r["rows"]]
        oracle = HERE / "results" / f"extractive_oracle_{Path(r['recipe']).stem}.json"
        if oracle.exists():
            o = json.loads(oracle.read_text())
            lines += ["", f"Extractive oracle (`benchmarks/extractive_oracle.py`), the best span of L source words per "
                          f"example, protocol {o['protocol']}: " +
                      "; ".join(f"L = {n}: {' / '.join(map(str, v))}" for n, v in o["oracle"].items())]
    return lines


def speaker_tables() -> list[str]:
    """The leave-one-speaker-out runs of benchmarks/speaker_cv.py, one row per setting."""
    runs = [json.loads(p.read_text()) for p in sorted((HERE / "results").glob("speaker_cv_*.json"))]
    if not runs:
        return []
    lines = ["", "## Speech: leave one speaker out (`benchmarks/speaker_cv.py`)", "",
             "Each fold trains without one speaker and tests on all of that speaker's recordings (chance: 10% "
             "exact match). Validation `speakers`: another training speaker, held out again, chooses the "
             "checkpoints (three voices train), and settings are compared on those validation speakers only. "
             "Validation `recipe`: the recipe as a user trains it, all four other voices train and their own "
             "valid recordings choose the checkpoints; its validation WER is on voices training heard and "
             "compares nothing.", "",
             "| recipe and overrides | validation | mean exact match | worst speaker | per speaker | mean validation WER | date |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        per = ", ".join(f"{f['speaker']} {f['test_exact_match']}" for f in r["folds"])
        lines.append(f"| `{r['recipe']}` {' '.join(r['overrides'])} {r.get('note', '')} | {r.get('protocol', 'speakers')} | "
                     f"{r['mean_exact_match']} | {r['worst_exact_match']} | {per} | {r['mean_valid_wer']} | {r['date']} |")
    return lines


def write_table(results: dict) -> None:
    lines = ["# Quality benchmarks", "",
             "Written by `benchmarks/quality.py`. Figures are percentages (BLEU, chrF, ROUGE F1, exact match,",
             "WER), ppl is the model's perplexity on the evaluated split's references, avg words the output length.",
             "", *standing_table(results),
             "## Every run", "",
             "Each row is one training run of a recipe (as it was then), evaluated with the recipe's decoding "
             "settings.", "",
             "| run | split | model | baselines | train min | steps | machine | date | command |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(results.items()):
        metrics = "; ".join([_metric_text(k, v) for k, v in r["metrics"].items()] +
                            [f"{label} {r[key]}" for key, label in (("reference_ppl", "ppl"), ("avg_words", "avg words"))
                             if key in r and r[key] == r[key]])        # NaN: not reported
        base = "; ".join(f"{b}: " + "; ".join(_metric_text(k, v) if isinstance(v, dict) else f"{k.replace('_', ' ')} {v}"
                                              for k, v in m.items())
                         for b, m in r.get("baselines", {}).items())
        lines.append(f"| {name} | {r['split']} | {metrics} | {base or '-'} | {r['train_minutes']} | {r['steps']} | "
                     f"{r['machine']} | {r['date']} | `{r['command']}` |")
    lines += protocol_tables() + speaker_tables()
    notes = HERE / "recipe_notes.md"             # the recipes' history, as their comments told it
    if notes.exists():
        lines += ["", notes.read_text(encoding="utf-8").rstrip("\n")]
    (HERE / "quality.md").write_text("\n".join(lines) + "\n")


def _metric_text(name: str, v: dict) -> str:
    subs = [f"{k} {x}" for k, x in v.items() if k not in ("value", "signature", "sentences")]
    return f"{name} {v['value']}" + (f" ({', '.join(subs)})" if subs else "")


if __name__ == "__main__":
    main()
