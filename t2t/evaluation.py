"""Evaluate a checkpoint: decode a split, score it with the recipe's metrics, write the report.

Outputs go to `OUT/` (default: the run's `eval/` folder): `{split}.hyp` (one hypothesis a line),
`{split}.tsv` (id, source, hypothesis, references side by side), `{split}.report.json` and
`{split}.report.md`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Sequence

from t2t.assembly import build_task
from t2t.errors import T2TError
from t2t.metric import Metric, Score, check_lengths
from t2t.pipeline import Pipeline
from t2t.recipe import Recipe
from t2t.registry import get_registry

log = logging.getLogger("t2t")


def run_dir_of(checkpoint_path: Path) -> Path:
    """The run directory a checkpoint file belongs to (its folder's parent for checkpoints/*.pt)."""
    p = Path(checkpoint_path)
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def metric_objects(recipe: Recipe, registry, names: Sequence[str] | None = None) -> list[Metric]:
    specs = recipe.metrics if names is None else [m for m in recipe.metrics if m.name in names]
    return [registry.get("metrics", m.name)(m.options) for m in specs]


def evaluate(checkpoint: str | Path | Sequence[str | Path] | None = None, recipe: Recipe | None = None,
             split: str = "test", data_dir=None, device: str = "auto", out_dir: str | Path | None = None,
             registry=None, limit: int | None = None, baselines: Sequence[str] = (), **decode_overrides) -> dict:
    """Decode `split` with the checkpoint's model (several checkpoints: their ensemble) and score it,
    next to any model-free `baselines` of the task; returns the report (also written). With no
    checkpoint, only the baselines."""
    if checkpoint is None and recipe is None:
        raise T2TError("evaluate needs a checkpoint, or a recipe and --baseline")
    pipe = None
    if checkpoint is not None:
        pipe = Pipeline.from_checkpoint(checkpoint, device=device, registry=registry, data_dir=data_dir)
        if recipe is not None:                   # the given recipe says what to evaluate on and how
            pipe.recipe = dataclasses.replace(pipe.recipe, data=recipe.data, decode=recipe.decode,
                                              metrics=recipe.metrics, task=recipe.task)
            trained = pipe.task.state_dict()           # e.g. speech CMVN statistics: the model's, not refitted
            pipe.task = build_task(pipe.recipe, pipe.registry, data_dir)
            pipe.task.load_state_dict(trained)
        recipe, task, registry = pipe.recipe, pipe.task, pipe.registry
        files = pipe.checkpoint_paths
        default = "eval" if len(files) == 1 else f"eval-ensemble{len(files)}"    # not over the first model's report
        out = Path(out_dir) if out_dir else run_dir_of(pipe.checkpoint_path) / default
    else:
        registry = get_registry(registry)
        task = build_task(recipe, registry, data_dir)
        out = Path(out_dir) if out_dir else Path(recipe.output_dir) / "eval"
    unknown = [b for b in baselines if b not in task.baselines]
    if unknown:
        raise T2TError(f"task '{recipe.task}' has no baseline '{unknown[0]}'; its baselines: "
                       f"{', '.join(task.baselines) or 'none'}")
    examples = task.examples(split)[:limit]
    out.mkdir(parents=True, exist_ok=True)
    report = {"task": recipe.task, "split": split, "sentences": len(examples)}
    if pipe is not None:
        report.update(_decode_and_score(pipe, examples, split, out, pipe.decode_options(**decode_overrides)))
    for name in baselines:
        texts = task.baseline(name, examples)
        (out / f"{split}.{name}.hyp").write_text("".join(_one_line(t) + "\n" for t in texts), encoding="utf-8")
        scores = score_texts(metric_objects(recipe, registry), texts, [ex.refs for ex in examples])
        report.setdefault("baselines", {})[name] = {k: s.to_dict() for k, s in scores.items()}
        report["baselines"][name]["avg_words"] = _avg_words(texts)
    report.setdefault("outputs", {})["report"] = str(out / f"{split}.report.json")
    write_report(report, out / f"{split}.report")
    return report


def _decode_and_score(pipe: Pipeline, examples, split: str, out: Path, opts) -> dict:
    metrics = metric_objects(pipe.recipe, pipe.registry)
    started = time.time()
    words = 0
    with open(out / f"{split}.hyp", "w", encoding="utf-8") as fh, open(out / f"{split}.tsv", "w", encoding="utf-8") as ft:
        ft.write("id\tsource\thypothesis\treferences\n")
        for start in range(0, len(examples), opts.max_sentences * 4):
            chunk = examples[start: start + opts.max_sentences * 4]
            results = pipe.search([ex.source for ex in chunk], opts)
            texts = [pipe.detokenize(r[0].tokens) for r in results]
            words += sum(len(t.split()) for t in texts)
            for m in metrics:
                m.update(texts, [ex.refs for ex in chunk])
            for ex, text in zip(chunk, texts):
                fh.write(_one_line(text) + "\n")
                src = ex.source if isinstance(ex.source, str) else f"<features {tuple(ex.source.shape)}>"
                ft.write("\t".join(_one_line(x) for x in (ex.id, src, text, " ||| ".join(ex.refs))) + "\n")
    elapsed = time.time() - started
    ppl = {}
    if pipe.tgt_tok.languages_to_detect():           # the references' language is not named: no prompt for them
        log.info("reference perplexity left out: the references' language is not named (tokenizer.target_lang)")
    else:
        nll, tokens = pipe.reference_loss(examples)
        ppl = {"reference_ppl": math.exp(min(nll / max(tokens, 1), 50))}
    files = [str(f) for f in pipe.checkpoint_paths]
    return {"checkpoint": " + ".join(files), **({"ensemble": files} if len(files) > 1 else {}),
            "decode": dataclasses.asdict(opts),
            "metrics": {m.name: m.result().to_dict() for m in metrics},
            **ppl, "avg_words": words / max(len(examples), 1),
            "time_s": round(elapsed, 2), "sentences_per_s": round(len(examples) / max(elapsed, 1e-9), 2),
            "device": str(pipe.device),
            "outputs": {"hypotheses": str(out / f"{split}.hyp"), "side_by_side": str(out / f"{split}.tsv")}}


def _avg_words(texts: Sequence[str]) -> float:
    return sum(len(t.split()) for t in texts) / max(len(texts), 1)


def score_texts(metrics: Sequence[Metric], hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, Score]:
    """Score hypotheses against per-sentence reference lists with several metrics."""
    check_lengths(hyps, refs)
    return {m.name: m.compute(hyps, refs) for m in metrics}


def _one_line(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").splitlines())


def write_report(report: dict, stem: Path) -> None:
    """`stem.json` and `stem.md` (a table of every metric with its signature)."""
    stem = Path(stem)
    Path(f"{stem}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    Path(f"{stem}.md").write_text(markdown(report), encoding="utf-8")


def markdown(report: dict) -> str:
    lines = [f"# Evaluation: {report.get('task', '')} / {report.get('split', '')}", ""]
    for key in ("checkpoint", "sentences", "reference_ppl", "avg_words", "time_s", "sentences_per_s", "device"):
        if key in report:
            lines.append(f"- {key}: {report[key]}")
    if "decode" in report:
        d = report["decode"]
        mode = "sampling" if d.get("sampling") else ("greedy" if d.get("beam") == 1 else f"beam {d.get('beam')}")
        lines.append(f"- decoding: {mode}, length penalty {d.get('length_penalty')}, "
                     f"max length {d.get('max_len_a')} * source + {d.get('max_len_b')}")
    lines += ["", "| system | metric | value | signature |", "|---|---|---|---|"]
    systems = {"model": report.get("metrics", {})}
    systems.update({f"baseline {k}": v for k, v in report.get("baselines", {}).items()})
    for system, metrics in systems.items():
        for name, s in metrics.items():
            if not isinstance(s, dict):
                continue
            signature = s.get("signature", "").replace("|", "\\|")        # a table cell
            lines.append(f"| {system} | {name} | {s['value']:.2f} | `{signature}` |")
            for sub, v in s.get("details", {}).items():
                if isinstance(v, float) and sub != name:
                    ci = s["details"].get("ci95", {}).get(sub)
                    ci_text = f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else ""
                    lines.append(f"| {system} | {name}.{sub} | {v:.2f}{ci_text} | |")
    return "\n".join(lines) + "\n"
