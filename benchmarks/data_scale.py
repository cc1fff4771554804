"""Corpora of millions of pairs: preparing them once, and what training from them costs.

Generates synthetic parallel corpora deterministically (Zipf-distributed pseudo-words; the target
is the source's words mapped one to one and in reverse order, about 21 words a side as in WMT14
en-de), then for each size records: `t2t prepare` time and pairs/s (tokenizer training and
encoding apart), its peak RSS, SentencePiece's own encoder on the same text with as many threads
(the reference), time from `t2t train` to the first update on the warm prepared data, training
tokens/s and peak RSS against the same recipe on a Multi30k-sized corpus (29,000 pairs), two DDP
workers' memory, and the disk size.

    python benchmarks/data_scale.py --sizes 1000000 4500000 --work /tmp/t2t-scale
    python benchmarks/data_scale.py --defaults --sizes 1000000     # the recipe defaults, cold then warm

Results go to benchmarks/results/data_scale.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def make_corpus(folder: Path, pairs: int, seed: int = 0, vocab: int = 40_000) -> Path:
    """`pairs` sentence pairs in train.src / train.tgt (and a small valid split), made from the seed."""
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    def words(n):
        lens = rng.integers(2, 10, n)
        return ["".join(rng.choice(letters, k)) for k in lens]
    src_words, tgt_words = np.array(words(vocab)), np.array(words(vocab))
    p = 1.0 / np.arange(1, vocab + 1) ** 1.1
    p /= p.sum()
    with open(folder / "train.src", "w") as fs, open(folder / "train.tgt", "w") as ft:
        done = 0
        while done < pairs:
            n = min(100_000, pairs - done)
            lengths = np.clip(rng.gamma(4.0, 5.2, n).astype(int) + 1, 1, 100)
            ids = rng.choice(vocab, int(lengths.sum()), p=p)
            cuts = np.cumsum(lengths)[:-1]
            for sent in np.split(ids, cuts):
                fs.write(" ".join(src_words[sent]) + "\n")
                ft.write(" ".join(tgt_words[sent[::-1]]) + "\n")
            done += n
    for side in ("src", "tgt"):
        with open(folder / f"train.{side}") as f, open(folder / f"valid.{side}", "w") as g:
            for _, line in zip(range(500), f):
                g.write(line)
    (folder / "done").write_text("")
    return folder


def recipe(data: Path, out: Path, prepared: Path, sample: int) -> dict:
    return {"task": "translation",
            "data": {"dir": str(data), "source": "src", "target": "tgt", "splits": {"test": "valid"},
                     "max_source_len": 128, "max_target_len": 128, "prepared_dir": str(prepared)},
            "tokenizer": {"name": "sentencepiece", "vocab_size": 8000, "shared": True, "max_sentences": sample},
            "model": {"arch": "transformer", "dim": 256, "layers": 3, "heads": 4, "ff_dim": 1024, "dropout": 0.1,
                      "share_embeddings": True, "tie_output": True},
            "train": {"max_tokens": 4096, "lr": 1e-3, "warmup": 1000, "max_steps": 20, "log_every": 1,
                      "validation": False, "threads": 2, "precision": "fp32"},
            "output_dir": str(out)}


class Watch:
    """Peak resident memory of a process tree, sampled every 50 ms from /proc: the largest single
    process and the sum over processes (RSS, and its anonymous part: what is not file pages)."""

    def __init__(self, pid: int):
        self.pid, self.peak_one, self.peak_sum, self.peak_anon_sum = pid, 0, 0, 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _tree(self):
        pids, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            try:
                for t in os.listdir(f"/proc/{p}/task"):
                    todo += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
            except OSError:
                pass
        return pids

    def _run(self):
        while self.running:
            rss = anon = 0
            for p in self._tree():
                try:
                    fields = dict(line.split(":", 1) for line in open(f"/proc/{p}/status"))
                except OSError:
                    continue
                r = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
                a = int(fields.get("RssAnon", "0 kB").split()[0]) * 1024
                self.peak_one = max(self.peak_one, r)
                rss, anon = rss + r, anon + a
            self.peak_sum, self.peak_anon_sum = max(self.peak_sum, rss), max(self.peak_anon_sum, anon)
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.thread.join()


def run(cmd: list[str], log_file: Path | None = None, first_step: Path | None = None) -> dict:
    """Run a t2t command; wall time, peak memory, and (given a log.jsonl) when its first update was logged."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    started = time.time()
    out = open(log_file, "w") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    watch = Watch(proc.pid)
    first = None
    while proc.poll() is None:
        if first_step is not None and first is None and first_step.exists():
            for line in first_step.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("event") == "step" or "loss" in rec:
                    first = time.time() - started
                    break
        time.sleep(0.05)
    watch.stop()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log_file}")
    return {"wall_s": round(time.time() - started, 2), "first_update_s": round(first, 2) if first else None,
            "peak_rss_gb": round(watch.peak_one / 2**30, 3), "peak_rss_sum_gb": round(watch.peak_sum / 2**30, 3),
            "peak_anon_sum_gb": round(watch.peak_anon_sum / 2**30, 3)}


def tokens_per_s(run_dir: Path, skip: int = 5) -> float:
    recs = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in recs if "tokens_per_s" in r][skip:]
    return round(float(np.median(rates)), 1) if rates else float("nan")


def sentencepiece_reference(data: Path, tokenizers: Path, threads: int) -> dict:
    """SentencePiece's own encoder over the same lines (both sides), in chunks, with `threads`."""
    import sentencepiece as spm
    import torch
    state = torch.load(tokenizers, weights_only=True)["tokenizers"]["target"]
    sp = spm.SentencePieceProcessor(model_proto=bytes(state["extra"]["model"].numpy().tobytes()))
    started, lines = time.time(), 0
    for side in ("src", "tgt"):
        with open(data / f"train.{side}", encoding="utf-8") as f:
            while chunk := [line.rstrip("\n") for _, line in zip(range(100_000), f)]:
                sp.encode(chunk, out_type=int, num_threads=threads)
                lines += len(chunk)
    seconds = time.time() - started
    return {"seconds": round(seconds, 2), "sentences": lines, "sentences_per_s": round(lines / seconds, 1)}


def t2t(*args) -> list[str]:
    return [sys.executable, "-m", "t2t.cli", *args]


def measure(size: int, work: Path, sample: int, small: dict | None) -> dict:
    data = make_corpus(work / f"corpus-{size}", size)
    out, prepared = work / f"run-{size}", work / f"prepared-{size}"
    path = work / f"recipe-{size}.yaml"
    path.write_text(yaml.safe_dump(recipe(data, out, prepared, sample)))
    shutil.rmtree(prepared, ignore_errors=True)            # measure a prepare from nothing
    row = {"pairs": size, "source_words": sum(len(line.split()) for line in open(data / "train.src"))}
    prep = run(t2t("prepare", str(path)), work / f"prepare-{size}.log")
    folder = next(prepared.glob("train-*"))
    manifest = json.loads((folder / "manifest.json").read_text())
    row["prepare"] = {**prep, "encode_s": manifest["seconds"], "tokenizer_s": round(prep["wall_s"] - manifest["seconds"], 2),
                      "pairs_per_s_encoding": manifest["examples_per_s"],
                      "pairs_per_s_overall": round(size / prep["wall_s"], 1),
                      "disk_mb": round(sum(f.stat().st_size for f in folder.iterdir()) / 2**20, 1),
                      "tokens": manifest["arrays"]["src"]["shape"][0] + manifest["arrays"]["tgt"]["shape"][0]}
    row["sentencepiece_encode"] = sentencepiece_reference(data, next(prepared.glob("tokenizers-*.pt")), 2)
    row["encode_vs_sentencepiece"] = round(manifest["seconds"] / row["sentencepiece_encode"]["seconds"], 3)
    trained = run(t2t("train", str(path), "--overwrite"), work / f"train-{size}.log", first_step=out / "log.jsonl")
    row["train"] = {**trained, "tokens_per_s": tokens_per_s(out)}
    ddp = run(t2t("train", str(path), "--overwrite", "--nproc", "2", "train.threads=1"), work / f"ddp-{size}.log")
    row["ddp2"] = ddp
    if small:
        row["train_tokens_per_s_vs_small"] = round(row["train"]["tokens_per_s"] / small["train"]["tokens_per_s"], 3)
        row["train_peak_rss_minus_small_gb"] = round(trained["peak_rss_gb"] - small["train"]["peak_rss_gb"], 3)
        row["ddp2_anon_sum_minus_small_gb"] = round(ddp["peak_anon_sum_gb"] - small["ddp2"]["peak_anon_sum_gb"], 3)
    print(json.dumps(row), flush=True)
    return row


def defaults(size: int, work: Path, extra: list[str]) -> dict:
    """A recipe that leaves everything at t2t's defaults but the task, data, a SentencePiece vocabulary
    of 8,000 and a small Transformer, trained for 5 updates: cold (an empty prepared-data cache) and
    then a second run of another setting (model.dim 128) into another folder, as a user trying a
    second setting does; time to each run's first update and peak memory."""
    data = make_corpus(work / f"corpus-{size}", size)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["T2T_CACHE"] = str(cache)
    path = work / f"defaults-{size}.yaml"
    path.write_text(yaml.safe_dump({
        "task": "translation", "data": {"dir": str(data), "source": "src", "target": "tgt", "splits": {"test": "valid"}},
        "tokenizer": {"name": "sentencepiece", "vocab_size": 8000, "shared": True},
        "model": {"arch": "transformer", "dim": 256, "layers": 3, "heads": 4, "ff_dim": 1024},
        "train": {"max_steps": 5, "log_every": 1}, "output_dir": str(work / f"defaults-run-{size}")}))
    shutil.rmtree(work / f"defaults-run-{size}", ignore_errors=True)          # no log of an earlier run
    cold = run(t2t("train", str(path), *extra), work / f"defaults-cold-{size}.log",
               first_step=work / f"defaults-run-{size}" / "log.jsonl")
    other = work / f"defaults-other-{size}"
    shutil.rmtree(other, ignore_errors=True)
    second = run(t2t("train", str(path), "model.dim=128", f"output_dir={other}", *extra),
                 work / f"defaults-second-{size}.log", first_step=other / "log.jsonl")
    log = (work / f"defaults-second-{size}.log").read_text()
    second["reused"] = "reusing" in log and "prepared train" not in log
    row = {"pairs": size, "overrides": extra, "cold": cold, "second": second}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defaults", action="store_true", help="only the recipe-defaults runs (cold, then a second "
                    "setting on the same data) of the first size; results to data_scale_defaults.*")
    ap.add_argument("--override", action="append", default=[], help="with --defaults: a recipe override for both runs")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_500_000])
    ap.add_argument("--small", type=int, default=29_000, help="the Multi30k-sized corpus everything is compared with")
    ap.add_argument("--sample", type=int, default=300_000, help="sentences SentencePiece is trained on")
    ap.add_argument("--work", default="/tmp/t2t-data-scale")
    ap.add_argument("--machine", default="", help="a label for the machine (README's A, B, C)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.defaults:
        row = defaults(args.sizes[0], work, args.override)
        row.update(machine=args.machine or platform.processor() or platform.machine(), cores=os.cpu_count(),
                   date=time.strftime("%Y-%m-%d"))
        out = RESULTS / "data_scale_defaults.json"
        rows = (json.loads(out.read_text()) if out.exists() else []) + [row]
        out.write_text(json.dumps(rows, indent=1))
        lines = ["# A corpus of millions of pairs with the recipe defaults", "",
                 "A Transformer (256, 3+3) with a shared SentencePiece vocabulary of 8,000, every other setting at "
                 "its default, 5 updates; cold (empty prepared-data cache), then another setting (model.dim 128) "
                 "into another folder. Aims: cold <= 150 s to the first update and <= 3 GB peak RSS; the second "
                 "run <= 45 s, nothing retrained or re-encoded.", "",
                 "| date | machine | pairs | overrides | cold: first update (s) | cold: peak RSS (GB) | "
                 "second: first update (s) | second: peak RSS (GB) | second reused all |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['date']} | {r['machine']}, {r['cores']} cores | {r['pairs']:,} | "
                         f"{' '.join(r['overrides']) or '(defaults)'} | {r['cold']['first_update_s']} | "
                         f"{r['cold']['peak_rss_gb']} | {r['second']['first_update_s']} | {r['second']['peak_rss_gb']} | "
                         f"{r['second']['reused']} |")
        (RESULTS / "data_scale_defaults.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    small = measure(args.small, work, args.sample, None)
    rows = [measure(n, work, args.sample, small) for n in args.sizes]
    result = {"machine": args.machine or platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "sample": args.sample, "small": small, "rows": rows, "date": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data_scale.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "data_scale.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = [f"# Corpus scale ({result['date']}, machine {result['machine']}, {result['cores']} cores)", "",
             "| pairs | prepare: tokenizer + encoding (s) | encoding pairs/s | SentencePiece alone (s) | encoding / "
             "SentencePiece | prepare peak RSS (GB) | disk (MB) | first update, warm (s) | train tokens/s | "
             "train peak RSS (GB) | 2 DDP workers: RSS sum / anonymous (GB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in [result["small"], *result["rows"]]:
        p, t, d = r["prepare"], r["train"], r["ddp2"]
        lines.append(f"| {r['pairs']:,} | {p['tokenizer_s']} + {p['encode_s']} | {p['pairs_per_s_encoding']:,.0f} | "
                     f"{r['sentencepiece_encode']['seconds']} | {r['encode_vs_sentencepiece']} | {p['peak_rss_gb']} | "
                     f"{p['disk_mb']:,} | {t['first_update_s']} | {t['tokens_per_s']:,} | {t['peak_rss_gb']} | "
                     f"{d['peak_rss_sum_gb']} / {d['peak_anon_sum_gb']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
