"""Leave-one-speaker-out: a speech recipe trained without one speaker and tested on all of that
speaker's recordings, once per speaker, so the figure is for a voice the model never heard.

Each fold writes manifests into its own folder (the audio linked, not copied): train = every
recording of the other speakers (all three of the data's splits), test = every recording of the
held-out speaker; one of the training speakers, drawn with the seed, is held out again as the
validation split (`data.valid_speakers: 1`) to choose checkpoints, so the test speaker decides
nothing. Settings compared across folds are compared on those validation speakers, never on the
test speakers.

`--protocol recipe` measures the recipe as a user trains it instead, on one voice fewer: every other
speaker trains (their train and test recordings) and the recipe's own validation split chooses the
checkpoints (those speakers' valid recordings, as the recipe does with all five); the held-out speaker
is still only tested. Its validation WER is on voices training heard, so it compares no settings.

    python benchmarks/speaker_cv.py recipes/speech_digits.yaml --data-dir ../shared/data [--parallel 2] [KEY=VALUE ...]
    python benchmarks/speaker_cv.py recipes/speech_digits_whisper.yaml --data-dir ../shared/data \
        --folder /tmp/whisper-random --test-limit 50 train.max_steps=20 --name whisper_random

Writes benchmarks/results/speaker_cv_{name}.json and prints the per-speaker table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_rows(folder: Path) -> list[dict]:
    rows = []
    for split in ("train", "valid", "test"):
        with open(folder / f"{split}.tsv", encoding="utf-8") as f:
            rows += [{**r, "split": split} for r in csv.DictReader(f, delimiter="\t")]
    return rows


def write_fold(data: Path, out: Path, rows: list[dict], speaker: str, protocol: str = "speakers") -> None:
    out.mkdir(parents=True, exist_ok=True)
    link = out / "wav"
    if not link.exists():
        link.symlink_to((data / "wav").resolve())
    if protocol == "speakers":      # validation: a training speaker held out again (data.valid_speakers)
        splits = (("train", lambda r: r["speaker"] != speaker), ("test", lambda r: r["speaker"] == speaker))
    else:                           # the recipe's validation: the other speakers' valid recordings
        splits = (("train", lambda r: r["speaker"] != speaker and r["split"] != "valid"),
                  ("valid", lambda r: r["speaker"] != speaker and r["split"] == "valid"),
                  ("test", lambda r: r["speaker"] == speaker))
    for split, keep in splits:
        with open(out / f"{split}.tsv", "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["path", "transcript", "speaker"], delimiter="\t")
            w.writeheader()
            w.writerows({k: r[k] for k in ("path", "transcript", "speaker")} for r in rows if keep(r))


def run_fold(args, speaker: str, work: Path, threads: int) -> dict:
    fold, source = work / speaker, Path(args.data_dir) / args.data_subdir
    write_fold(source, fold / "data", read_rows(source), speaker, args.protocol)
    run = fold / "run"
    held = ["data.valid_speakers=1"] if args.protocol == "speakers" else []
    common = [f"data.dir={(fold / 'data').resolve()}", *held, f"train.threads={threads}",
              f"output_dir={run}", "--data-dir", args.data_dir, *args.overrides]   # other data paths resolve there
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.time()
    for cmd in (["train", args.recipe, "--overwrite", *common],
                ["evaluate", args.recipe, "--checkpoint", str(run), "--split", "test", *common,
                 *(["--limit", str(args.test_limit)] if args.test_limit else [])]):
        done = subprocess.run([sys.executable, "-m", "t2t.cli", "--quiet", *cmd], capture_output=True, text=True,
                              env=env)
        if done.returncode:
            sys.exit(f"fold {speaker}: {' '.join(cmd[:2])} failed:\n{done.stderr[-3000:]}")
    report = json.loads((run / "eval" / "test.report.json").read_text())
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    valid = [r for r in log if r.get("event") == "valid"]
    end = [r for r in log if r.get("event") == "end"][-1]
    best = end.get("best")
    return {"speaker": speaker, "test_exact_match": round(report["metrics"]["exact_match"]["value"], 2),
            "test_wer": round(report["metrics"]["wer"]["value"], 2), "test_sentences": report["sentences"],
            "valid_best": best, "valid_metric": end.get("metric"), "steps": end["step"],
            "validations": len(valid), "minutes": round((time.time() - started) / 60, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="recipe overrides for every fold (key=value)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--data-subdir", default="fsdd", help="the data folder under --data-dir")
    p.add_argument("--parallel", type=int, default=2, help="folds at once (one thread each when 2)")
    p.add_argument("--work", default="runs/speaker_cv")
    p.add_argument("--name", default="speech_digits")
    p.add_argument("--protocol", choices=("speakers", "recipe"), default="speakers",
                   help="validation on another held-out speaker (default), or the recipe's own on the training speakers")
    p.add_argument("--test-limit", type=int, default=0,
                   help="test only the first N recordings of each held-out speaker (a check of the machinery)")
    p.add_argument("--folder", help="a Whisper-tiny-shaped folder with random weights is made here and named as "
                   "model.pretrained (the machinery end to end; its scores mean nothing)")
    args = p.parse_args()
    if args.folder:
        from decode_speed import whisper_folder
        folder = whisper_folder(Path(args.folder))
        args.overrides = [f"model.pretrained={folder.resolve()}", *args.overrides]
    speakers = sorted({r["speaker"] for r in read_rows(Path(args.data_dir) / args.data_subdir)})
    work = Path(args.work) / args.name
    threads = max(1, (os.cpu_count() or 2) // args.parallel)
    with ThreadPoolExecutor(args.parallel) as pool:
        folds = list(pool.map(lambda s: run_fold(args, s, work, threads), speakers))
    em = [f["test_exact_match"] for f in folds]
    result = {"recipe": args.recipe, "overrides": args.overrides, "protocol": args.protocol,
              "test_limit": args.test_limit or None,
              "date": time.strftime("%Y-%m-%d"),
              "folds": folds, "mean_exact_match": round(sum(em) / len(em), 2), "worst_exact_match": min(em),
              "mean_valid_wer": round(sum(f["valid_best"] for f in folds) / len(folds), 2),
              "command": " ".join(["python", "benchmarks/speaker_cv.py", *sys.argv[1:]])}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"speaker_cv_{args.name}.json").write_text(json.dumps(result, indent=1))
    heard = "another speaker" if args.protocol == "speakers" else "the training speakers' valid recordings"
    print(f"| held-out speaker | exact match | WER | validation WER ({heard}) | updates |\n|---|---|---|---|---|")
    for f in folds:
        print(f"| {f['speaker']} | {f['test_exact_match']} | {f['test_wer']} | {f['valid_best']} | {f['steps']} |")
    print(f"mean exact match {result['mean_exact_match']}, worst {result['worst_exact_match']}; "
          f"mean validation WER {result['mean_valid_wer']}")


if __name__ == "__main__":
    main()
