"""The first check on a machine with a CUDA GPU: bf16 training speed and MFU, beam-5 decoding
speed, and DDP over NCCL when there is more than one GPU. Run through `benchmarks/gpu_check.sh`,
which runs tests/test_gpu.py first; writes benchmarks/results/gpu_check.json and .md.

    python benchmarks/gpu_check.py [--minutes 3]

MFU counts the FLOPs of the model's matrix products (as benchmarks/train_throughput.py does)
against the GPU's dense bf16 peak from its data sheet where the name is known, and against a
measured bf16 matmul rate always.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train_throughput import LENGTH, SIZES, VOCAB, model_flops_per_step, worker_t2t  # noqa: E402

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12, "L40S": 362e12,
             "L4": 121e12, "A10": 125e12}     # dense (no sparsity) tensor-core bf16, SXM where both exist


def datasheet_peak(name: str) -> float | None:
    for key in sorted(PEAK_BF16, key=len, reverse=True):
        if key in name:
            return PEAK_BF16[key]
    return None


def measured_peak() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, n = time.perf_counter(), 20
    for _ in range(n):
        a @ b
    torch.cuda.synchronize()
    return n * 2 * 8192 ** 3 / (time.perf_counter() - start)


def decoding(size: str, beam: int, sentences: int = 2048, batch: int = 256) -> dict:
    from t2t.models.base import ModelSpec
    from t2t.models.transformer import Transformer, TransformerOptions
    from t2t.options import DecodeOptions
    from t2t.search import generate
    torch.manual_seed(0)
    model = Transformer(TransformerOptions(**SIZES[size], dropout=0.0), ModelSpec(VOCAB, VOCAB))
    model = model.cuda().eval().to(torch.bfloat16)
    src = torch.randint(4, VOCAB, (sentences, LENGTH), device="cuda")
    lengths = torch.full((batch,), LENGTH, device="cuda")
    opts = DecodeOptions(beam=beam, max_len_a=0.0, max_len_b=LENGTH, max_sentences=batch)
    with torch.no_grad():
        generate(model, src[:batch], lengths, opts)                      # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, sentences, batch):
            generate(model, src[i: i + batch], lengths, opts)
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"size": size, "beam": beam, "sentences": sentences, "batch": batch, "seconds": round(seconds, 2),
            "sentences_per_s": round(sentences / seconds, 1), "note": "random weights, up to 30 tokens a sentence"}


def ddp(gpus: int, minutes: float) -> dict:
    """`t2t train --nproc N` on the built-in reverse task: does NCCL training run, and how fast."""
    import yaml
    with tempfile.TemporaryDirectory() as tmp:
        recipe = {"task": "reverse", "data": {"train_size": 200_000, "min_length": 10, "max_length": 30},
                  "tokenizer": {"name": "char"},
                  "model": {"arch": "transformer", **SIZES["base"], "dropout": 0.1},
                  "train": {"max_tokens": 16384, "max_steps": 100_000, "max_time": minutes, "log_every": 5,
                            "precision": "bf16", "valid_max_sentences": 0, "validate_every": 1_000_000},
                  "output_dir": f"{tmp}/run"}
        (Path(tmp) / "r.yaml").write_text(yaml.safe_dump(recipe))
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "t2t.cli", "--quiet", "train", f"{tmp}/r.yaml", "--nproc",
                               str(gpus)], capture_output=True, text=True, timeout=int(60 * minutes) + 240)
        logs = [json.loads(x) for x in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()] \
            if (Path(tmp) / "run" / "log.jsonl").exists() else []
    rates = [r["tokens_per_s"] for r in logs if r.get("event") == "step"][2:]
    return {"gpus": gpus, "exit": done.returncode, "wall_s": round(time.time() - started, 1),
            "tokens_per_s": round(sorted(rates)[len(rates) // 2], 1) if rates else None,
            "stderr_tail": done.stderr[-1500:] if done.returncode else ""}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=3.0, help="bf16 training time")
    p.add_argument("--max-tokens", type=int, default=32768)
    p.add_argument("--out", default=str(HERE / "results" / "gpu_check"))
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False)")
    name, gpus = torch.cuda.get_device_name(0), torch.cuda.device_count()
    result = {"gpu": name, "gpus": gpus, "torch": torch.__version__, "cuda": torch.version.cuda,
              "date": time.strftime("%Y-%m-%d")}
    sheet, measured = datasheet_peak(name), measured_peak()
    result["peak_bf16_flops"] = {"datasheet": sheet, "measured_matmul": round(measured)}
    train = worker_t2t("base", "bf16", threads=os.cpu_count() or 1, device="cuda", max_tokens=args.max_tokens,
                       steps=(10, 100_000), max_time=args.minutes)
    flops_per_token = model_flops_per_step("base", train["batch"], LENGTH, LENGTH) / (train["batch"] * LENGTH)
    achieved = train["tokens_per_s"] * flops_per_token
    train.update(model_flops_per_s=round(achieved), mfu_datasheet=round(achieved / sheet, 4) if sheet else None,
                 mfu_measured_matmul=round(achieved / measured, 4))
    result["train_bf16_base"] = train
    print(json.dumps({"train_bf16_base": train}), flush=True)
    result["decode_beam5"] = [decoding("small", 5), decoding("base", 5)]
    print(json.dumps({"decode_beam5": result["decode_beam5"]}), flush=True)
    if gpus > 1:
        result["ddp_nccl"] = ddp(gpus, 1.0)
        print(json.dumps({"ddp_nccl": result["ddp_nccl"]}), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    t = result["train_bf16_base"]
    lines = [f"# GPU check ({result['date']}): {gpus} x {name}, torch {result['torch']}, CUDA {result['cuda']}", "",
             f"- bf16 training, Transformer base, {t['batch']} sentences of {LENGTH} tokens a batch: "
             f"{t['tokens_per_s']:,.0f} target tokens/s, MFU {t['mfu_datasheet']} of the data-sheet peak, "
             f"{t['mfu_measured_matmul']} of a measured bf16 matmul ({measured / 1e12:.0f} TFLOP/s)"]
    for d in result["decode_beam5"]:
        lines.append(f"- beam 5, {d['size']}, batches of {d['batch']}: {d['sentences_per_s']:,} sentences/s")
    if "ddp_nccl" in result:
        d = result["ddp_nccl"]
        lines.append(f"- DDP over NCCL, {d['gpus']} GPUs, exit {d['exit']}: {d['tokens_per_s']} tokens/s")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
