"""Extractive oracle: for each example, the best span of exactly L words of the source the model
reads, scored against the references under the mean-over-references ROUGE protocol (the span with
the highest mean of ROUGE-1/2/L F1; all three reported). It bounds what an output of L words taken
from the source can score, so it tells whether a length or the choice of words holds a model back.

    python benchmarks/extractive_oracle.py recipes/aeslc_transformer.yaml --lengths 3 5 19 --data-dir ../shared/data

Scoring is rouge-score's (its tokenizer, Porter stemming of words over 3 letters, F1), written with
counters so that every span of every example can be tried; it reproduces `t2t evaluate`'s ROUGE
under multi_ref mean (checked on the lead baseline: identical to 0.01). Writes
benchmarks/results/extractive_oracle_{name}.json.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from nltk.stem import porter
from rouge_score import tokenize

from t2t.assembly import build_task
from t2t.recipe import load_recipe
from t2t.registry import get_registry

STEM = porter.PorterStemmer()


def words(text: str) -> list[str]:
    return [STEM.stem(w) if len(w) > 3 else w for w in tokenize.tokenize(text, None)]


def grams(ws: list[str], n: int) -> Counter:
    return Counter(tuple(ws[i: i + n]) for i in range(len(ws) - n + 1))


def f1(overlap: int, a: int, b: int) -> float:
    return 0.0 if overlap == 0 else 2 * overlap / (a + b)


def lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def scores(cand: list[str], refs: list[list[str]]) -> tuple[float, float, float]:
    """Mean over references of ROUGE-1, ROUGE-2 and ROUGE-L F1 (fractions)."""
    out = [0.0, 0.0, 0.0]
    for ref in refs:
        for k, n in enumerate((1, 2)):
            c, r = grams(cand, n), grams(ref, n)
            out[k] += f1(sum((c & r).values()), sum(c.values()), sum(r.values()))
        out[2] += f1(lcs(cand, ref), len(cand), len(ref))
    return tuple(x / len(refs) for x in out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--split", default="test")
    p.add_argument("--lengths", type=int, nargs="+", default=[3, 5])
    p.add_argument("--data-dir")
    p.add_argument("--name", help="results name (default: the recipe's file name)")
    args = p.parse_args()
    recipe = load_recipe(args.recipe)
    examples = build_task(recipe, get_registry(), args.data_dir).examples(args.split)
    sources = [words(ex.source) for ex in examples]
    refs = [[words(r) for r in ex.refs] for ex in examples]
    result = {"recipe": args.recipe, "split": args.split, "sentences": len(examples), "protocol": "mean", "oracle": {}}
    for length in args.lengths:
        total = [0.0, 0.0, 0.0]
        for src, rs in zip(sources, refs):
            spans = [src[i: i + length] for i in range(max(1, len(src) - length + 1))]
            best = max((scores(s, rs) for s in spans if s), key=sum, default=(0.0, 0.0, 0.0))
            total = [t + b for t, b in zip(total, best)]
        result["oracle"][length] = [round(100 * t / len(examples), 2) for t in total]
        print(f"best span of {length} words: ROUGE-1/2/L {' / '.join(map(str, result['oracle'][length]))}", flush=True)
    name = args.name or Path(args.recipe).stem
    out = Path(__file__).resolve().parent / "results" / f"extractive_oracle_{name}.json"
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
