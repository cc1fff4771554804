"""Training throughput: t2t against Hugging Face transformers (MarianMT), same sizes, same batches.

For a transformer-base-sized model (d 512, 6+6 layers, 8 heads, ff 2048) and a small one (d 256,
3+3, 4 heads, ff 1024), vocabulary 8000, batches of about 4000 target tokens, label smoothing 0.1,
AdamW, clipping: target tokens per second, peak memory (the worker process's maximum resident
set) and model-FLOPs utilisation against this machine's measured matmul rate, in fp32 and bf16.

t2t is measured through its real Trainer on a synthetic task (random word sequences, so every
sentence has exactly the same length); HF through a plain training loop over batches of the same
shape. Each measurement runs in its own process.

    python benchmarks/train_throughput.py [--threads 2] [--sizes small,base] [--precisions fp32,bf16]

Writes benchmarks/results/train_throughput.{json,md}. Needs `pip install transformers` (HF side only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = {"small": dict(dim=256, layers=3, heads=4, ff_dim=1024), "base": dict(dim=512, layers=6, heads=8, ff_dim=2048)}
VOCAB, LENGTH, MAX_TOKENS = 8000, 30, 4000
STEPS = {"small": (3, 10), "base": (2, 5)}           # (warm-up, measured)


def model_flops_per_step(size: str, batch: int, src_len: int, tgt_len: int) -> float:
    """Forward + backward FLOPs (3x forward) of the matrix products of one training step."""
    c = SIZES[size]
    d, ff, n = c["dim"], c["ff_dim"], c["layers"]
    s_tok, t_tok = batch * src_len, batch * tgt_len
    enc = n * (2 * s_tok * (4 * d * d + 2 * d * ff) + 4 * batch * src_len * src_len * d)
    dec = n * (2 * t_tok * (4 * d * d + 2 * d * d + 2 * d * ff) + 2 * s_tok * 2 * d * d
               + 4 * batch * tgt_len * tgt_len * d + 4 * batch * tgt_len * src_len * d)
    out = 2 * t_tok * d * VOCAB
    return 3.0 * (enc + dec + out)


def matmul_rate(dtype_name: str, threads: int) -> float:
    import torch
    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(2048, 2048).to(dtype), torch.randn(2048, 2048).to(dtype)
    a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * 2048 ** 3 / (time.perf_counter() - t))
    return best


# --------------------------------------------------------------------------- workers (one process each)


def worker_t2t(size: str, precision: str, threads: int, device: str = "cpu", max_tokens: int = MAX_TOKENS,
               steps: tuple[int, int] | None = None, max_time: float | None = None) -> dict:
    """t2t's Trainer on random sequences: median tokens/s after `steps[0]` warm-up updates
    (`max_time` minutes bound the run where given)."""
    import torch

    import t2t
    from t2t.recipe import load_recipe
    from t2t.registry import Registry
    from t2t.testing import using_registry
    from t2t.trainer import train

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Opts(t2t.DataOptions):
        size: int = 3000

    class RandomSequences(t2t.Task):
        """Random sentences of exactly LENGTH words over a VOCAB-word vocabulary."""
        name = "random_sequences"
        Options = Opts

        def read(self, split):
            import random
            rng = random.Random(split)
            for _i in range(self.options.size if split == "train" else 4):
                yield t2t.Example(" ".join(f"w{rng.randrange(VOCAB - 4)}" for _ in range(LENGTH)),
                                  " ".join(f"w{rng.randrange(VOCAB - 4)}" for _ in range(LENGTH - 1)))

    import types
    plugin = types.ModuleType("bench_plugin")
    plugin.t2t_register_tasks = t2t.hookimpl(lambda register: register(RandomSequences))
    warm, measured = steps or STEPS[size]
    with tempfile.TemporaryDirectory() as tmp, using_registry(Registry.from_plugins([plugin])) as reg:
        recipe = load_recipe({
            "task": "random_sequences", "data": {"size": 3000},
            "tokenizer": {"name": "word", "max_size": VOCAB},
            "model": {"arch": "transformer", **SIZES[size], "dropout": 0.1},
            "train": {"max_tokens": max_tokens, "max_steps": warm + measured, "log_every": 1, "lr": 1e-4,
                      "label_smoothing": 0.1, "precision": precision, "threads": threads, "device": device,
                      "valid_max_sentences": 0, "max_epochs": 100_000, "validate_every": 1_000_000,
                      **({"max_time": max_time} if max_time else {})},
            "metrics": [], "output_dir": str(Path(tmp) / "run")}, registry=reg)
        train(recipe, registry=reg)
        steps = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
        steps = [r for r in steps if r.get("event") == "step"][warm:]
        tok_s = sorted(r["tokens_per_s"] for r in steps)[len(steps) // 2]
    batch = max_tokens // (LENGTH + 1)                     # the batcher: (longest + 1) * batch <= max_tokens
    return {"tokens_per_s": tok_s, "batch": batch, "steps": len(steps) + warm,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch": torch.__version__}


def worker_hf(size: str, precision: str, threads: int) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import MarianConfig, MarianMTModel
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    c = SIZES[size]
    config = MarianConfig(vocab_size=VOCAB, d_model=c["dim"], encoder_layers=c["layers"], decoder_layers=c["layers"],
                          encoder_attention_heads=c["heads"], decoder_attention_heads=c["heads"],
                          encoder_ffn_dim=c["ff_dim"], decoder_ffn_dim=c["ff_dim"], activation_function="relu",
                          dropout=0.1, attention_dropout=0.0, activation_dropout=0.0, max_position_embeddings=512,
                          pad_token_id=0, eos_token_id=3, decoder_start_token_id=2, scale_embedding=True,
                          share_encoder_decoder_embeddings=True, tie_word_embeddings=True)
    model = MarianMTModel(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98))
    batch = MAX_TOKENS // (LENGTH + 1)                     # t2t's batcher: (longest + 1) * batch <= max_tokens
    src = torch.randint(4, VOCAB, (batch, LENGTH))
    tgt = torch.randint(4, VOCAB, (batch, LENGTH))         # decoder input <s> w1..w29, labels w1..w29 </s>
    tgt[:, 0] = 2
    labels = torch.cat([tgt[:, 1:], torch.full((batch, 1), 3)], 1)
    mask = torch.ones_like(src)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    warm, measured = STEPS[size]
    times = []
    for _i in range(warm + measured):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=precision == "bf16"):
            logits = model(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
        loss = F.cross_entropy(logits.float().view(-1, VOCAB), labels.view(-1), ignore_index=0,
                               label_smoothing=0.1, reduction="sum")
        (loss / labels.numel()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    per_step = sorted(times[warm:])[measured // 2]
    return {"tokens_per_s": labels.numel() / per_step, "batch": batch,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# --------------------------------------------------------------------------- fine-tuning a pretrained folder
# An opus-mt-de-en-shaped folder (6+6 layers, d 512, 8 heads, ff 2048, swish, vocabulary 58101, random
# weights) whose SentencePiece models have one piece per word of the synthetic corpus, so that every
# sentence is LENGTH tokens on both sides and both frameworks train on batches of one shape.
OPUS_VOCAB, WORDS, FT_TOKENS, FT_STEPS = 58101, 2000, 2000, (3, 6)
LORA = {"rank": 8, "alpha": 16.0, "targets": ["q", "v"]}


def opus_folder(directory: Path) -> Path:
    import io

    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel
    words = [f"w{i}" for i in range(WORDS)]
    model = io.BytesIO()
    lines = [" ".join(words[i: i + 50]) for i in range(0, WORDS, 50)] * 2
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, model_type="word",
                                   vocab_size=WORDS + 1, unk_id=0, bos_id=-1, eos_id=-1, minloglevel=2,
                                   hard_vocab_limit=False)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("source.spm", "target.spm"):
        (directory / name).write_bytes(model.getvalue())
    vocab = {"</s>": 0, "<unk>": 1, **{f"\u2581{w}": i + 2 for i, w in enumerate(words)}}
    vocab.update({f"<filler_{i}>": i for i in range(len(vocab), OPUS_VOCAB - 1)})
    vocab["<pad>"] = OPUS_VOCAB - 1
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "MarianTokenizer"}))
    torch.manual_seed(0)
    MarianMTModel(MarianConfig(
        vocab_size=OPUS_VOCAB, decoder_vocab_size=OPUS_VOCAB, d_model=512, encoder_layers=6, decoder_layers=6,
        encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
        activation_function="swish", max_position_embeddings=512, pad_token_id=OPUS_VOCAB - 1, eos_token_id=0,
        decoder_start_token_id=OPUS_VOCAB - 1, forced_eos_token_id=0, scale_embedding=True, dropout=0.1,
    )).save_pretrained(directory)
    return directory


def _corpus(rng, n: int) -> list[tuple[str, str]]:
    return [(" ".join(f"w{rng.randrange(WORDS)}" for _ in range(LENGTH - 1)),
             " ".join(f"w{rng.randrange(WORDS)}" for _ in range(LENGTH - 1))) for _ in range(n)]


def worker_t2t_finetune(folder: str, lora: bool, threads: int, checkpointing: bool = False) -> dict:
    """t2t's Trainer fine-tuning the folder from a recipe (full, or LoRA on q and v; with
    `checkpointing`, train.checkpoint_activations)."""
    import random

    import torch

    from t2t.recipe import load_recipe
    from t2t.trainer import train
    warm, measured = FT_STEPS
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        pairs = _corpus(random.Random(0), 2000)
        for split, rows in (("train", pairs), ("valid", pairs[:4])):
            (data / f"{split}.de").write_text("".join(a + "\n" for a, _ in rows))
            (data / f"{split}.en").write_text("".join(b + "\n" for _, b in rows))
        recipe = load_recipe({
            "task": "translation", "data": {"dir": str(data), "source": "de", "target": "en"},
            "model": {"pretrained": folder},
            "train": {"max_tokens": FT_TOKENS, "max_steps": warm + measured, "log_every": warm, "lr": 1e-4,
                      "label_smoothing": 0.1, "threads": threads, "valid_max_sentences": 0,
                      "validate_every": 1_000_000, "checkpoint_activations": checkpointing,
                      **({"lora": LORA} if lora else {})},
            "metrics": [], "output_dir": str(Path(tmp) / "run")})
        train(recipe)
        steps = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
        windows = [r for r in steps if r.get("event") == "step"][1:]      # windows of `warm` steps, after the first
        tok_s = sum(r["tokens_per_s"] for r in windows) / len(windows)
    return {"tokens_per_s": tok_s, "batch": FT_TOKENS // (LENGTH + 1), "torch": torch.__version__,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def worker_hf_finetune(folder: str, lora: bool, threads: int, checkpointing: bool = False) -> dict:
    """A plain transformers loop fine-tuning the folder (LoRA through peft), batches of t2t's shape
    (with `checkpointing`, transformers' gradient checkpointing)."""
    import torch
    import torch.nn.functional as F
    from transformers import MarianMTModel
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MarianMTModel.from_pretrained(folder)
    if checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if lora:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"],
                                                 target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.98))
    batch = FT_TOKENS // (LENGTH + 1)
    pad, eos = OPUS_VOCAB - 1, 0
    src = torch.randint(2, WORDS + 2, (batch, LENGTH))
    src[:, -1] = eos
    labels = torch.randint(2, WORDS + 2, (batch, LENGTH))
    labels[:, -1] = eos
    dec_in = torch.cat([torch.full((batch, 1), pad), labels[:, :-1]], 1)
    mask = torch.ones_like(src)
    warm, measured = FT_STEPS
    times = []
    for _ in range(warm + measured):
        t = time.perf_counter()
        logits = model(input_ids=src, attention_mask=mask, decoder_input_ids=dec_in).logits
        loss = F.cross_entropy(logits.float().view(-1, OPUS_VOCAB), labels.view(-1), label_smoothing=0.1,
                               reduction="sum")
        (loss / labels.numel()).backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    per_step = sum(times[warm:]) / measured
    return {"tokens_per_s": labels.numel() / per_step, "batch": batch,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(framework: str, size: str, precision: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--worker", framework, size, precision, "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default="small,base")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--frameworks", default="t2t,hf")
    p.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "SIZE", "PRECISION"))
    p.add_argument("--out", default=str(HERE / "results" / "train_throughput"))
    p.add_argument("--finetune", action="store_true", help="fine-tune an opus-mt-shaped folder instead (full and "
                   "LoRA, t2t against a plain transformers loop; writes RESULTS/train_finetune.*)")
    args = p.parse_args()
    if args.worker:
        framework, size, precision = args.worker
        if size.startswith("/"):                          # fine-tuning the folder at this path
            fn = worker_t2t_finetune if framework.startswith("t2t") else worker_hf_finetune
            print(json.dumps(fn(size, "-lora" in framework, args.threads, framework.endswith("-ckpt"))))
            return
        fn = worker_t2t if framework == "t2t" else worker_hf
        print(json.dumps(fn(size, precision, args.threads)))
        return
    if args.finetune:
        return finetune(args)
    rates = {prec: matmul_rate(prec, args.threads) for prec in args.precisions.split(",")}
    rows = []
    for size in args.sizes.split(","):
        for prec in args.precisions.split(","):
            for fw in args.frameworks.split(","):
                r = run_worker(fw, size, prec, args.threads)
                if "error" not in r:
                    batch = r["batch"]
                    flops = model_flops_per_step(size, batch, LENGTH, LENGTH)
                    step_s = batch * LENGTH / r["tokens_per_s"]
                    r["mfu"] = flops / step_s / rates[prec]
                rows.append({"framework": fw, "size": size, "precision": prec, **r})
                print(json.dumps(rows[-1]), flush=True)
    ratios = {}
    for size in args.sizes.split(","):
        for prec in args.precisions.split(","):
            pick = {r["framework"]: r for r in rows if r["size"] == size and r["precision"] == prec}
            if "t2t" in pick and "hf" in pick and "tokens_per_s" in pick["t2t"] and "tokens_per_s" in pick["hf"]:
                ratios[f"{size}/{prec}"] = pick["t2t"]["tokens_per_s"] / pick["hf"]["tokens_per_s"]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores", "threads": args.threads, "matmul_gflops": {k: v / 1e9 for k, v in rates.items()},
              "rows": rows, "t2t_over_hf": ratios}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Training throughput ({result['date']}, {result['machine']}, {args.threads} threads)", "",
             "Measured matmul rate: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in result["matmul_gflops"].items()), "",
             "| size | precision | framework | target tokens/s | MFU | peak RSS (MB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['precision']} | {r['framework']} | error: {r['error']} | | |")
        else:
            lines.append(f"| {r['size']} | {r['precision']} | {r['framework']} | {r['tokens_per_s']:.0f} | "
                         f"{100 * r['mfu']:.0f}% | {r['peak_rss_mb']:.0f} |")
    lines += ["", "| size/precision | t2t / HF |", "|---|---|"] + [f"| {k} | {v:.2f}x |" for k, v in ratios.items()]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def finetune(args) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(opus_folder(Path(tmp) / "opus-mt-shaped"))
        for fw in ("t2t", "hf", "t2t-lora", "hf-lora", "t2t-ckpt", "hf-ckpt", "t2t-lora-ckpt", "hf-lora-ckpt"):
            r = run_worker(fw, folder, "fp32", args.threads)
            rows.append({"framework": fw, **r})
            print(json.dumps(rows[-1]), flush=True)
    pick = {r["framework"]: r for r in rows if "tokens_per_s" in r}
    ratios = {}
    for a, b, key in (("t2t", "hf", "tokens_per_s"), ("t2t-lora", "hf-lora", "tokens_per_s"),
                      ("t2t-lora", "t2t", "peak_rss_mb"), ("hf-lora", "hf", "peak_rss_mb"),
                      ("t2t-ckpt", "hf-ckpt", "tokens_per_s"), ("t2t-lora-ckpt", "hf-lora-ckpt", "tokens_per_s"),
                      ("t2t-lora-ckpt", "t2t-ckpt", "peak_rss_mb"), ("hf-lora-ckpt", "hf-ckpt", "peak_rss_mb"),
                      ("t2t-lora-ckpt", "t2t", "peak_rss_mb"), ("t2t-ckpt", "t2t", "tokens_per_s")):
        if a in pick and b in pick:
            ratios[f"{a} / {b} {key}"] = pick[a][key] / pick[b][key]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores", "threads": args.threads, "batch_tokens": FT_TOKENS, "lora": LORA,
              "rows": rows, "ratios": ratios}
    out = Path(args.out).with_name("train_finetune")
    Path(f"{out}.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Fine-tuning an opus-mt-de-en-shaped folder ({result['date']}, {result['machine']}, {args.threads} "
             f"threads, fp32, batches of {FT_TOKENS} tokens, LoRA r {LORA['rank']} on q and v; -ckpt: activation "
             f"checkpointing, t2t's train.checkpoint_activations and transformers' gradient checkpointing)", "",
             "| system | target tokens/s | peak RSS (MB) |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['framework']} | {r.get('tokens_per_s', 0):.0f} | {r.get('peak_rss_mb', 0):.0f} |"
                     if "error" not in r else f"| {r['framework']} | error: {r['error']} | |")
    lines += ["", "| comparison | ratio |", "|---|---|"] + [f"| {k} | {v:.2f}x |" for k, v in ratios.items()]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
