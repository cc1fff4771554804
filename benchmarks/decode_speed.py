"""Decoding speed: t2t against HF `generate` (MarianMT) and CTranslate2, same model configuration.

Transformer base (d 512, 6+6, 8 heads, ff 2048) and small (d 256, 3+3, 4 heads, ff 1024), vocabulary
8000, random weights. Every system decodes the same random source sentences (15-30 tokens) with
exactly 30 output tokens forced (minimum = maximum length), so that runs compare; greedy and beam 5,
batches of 32 sentences, float32, 2 CPU threads. CTranslate2 (where it installs) gets the saved
Marian model through its own converter, and is also run in int8 for reference; t2t is also run
with bf16 weights (`decode.precision: bf16`) and int8 linear layers (`decode.precision: int8`), and
t2t's own model is exported with `t2t export` (`t2t.export.write_ctranslate2`) and decoded by
CTranslate2 in float32 and int8 (t2t-ct2, t2t-ct2-int8): its speed should equal CTranslate2's on the
Marian model of the same shape.

The `opus` size is a pretrained folder shaped like Helsinki-NLP/opus-mt-de-en (6+6 layers, d 512, 8 heads,
ff 2048, swish, vocabulary 58101, random weights): t2t loads it (`t2t.load(folder)`, fp32 and int8), HF
`generate` loads it, CTranslate2 converts it with its own converter; beam 4, the folder's decoding rules.

The `whisper` size is a Whisper folder shaped like openai/whisper-tiny (4+4 layers, d 384, 6 heads,
80 mel bins, vocabulary 51865, random weights): every system decodes the same recordings (tones of 2
to 10 s, padded to 30 s as Whisper's front end does) from the same log-mel features, with the English
transcribe prompt, in batches of 8, greedy and beam 5, 30 output tokens forced (t2t and transformers
by a minimum length; CTranslate2, which has none, by suppressing <|endoftext|>).

    python benchmarks/decode_speed.py [--sizes small,base,opus,whisper] [--threads 2] [--sentences 256]

Writes benchmarks/results/decode_speed.{json,md}. Needs `pip install transformers` (and optionally
`ctranslate2`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPUS_BEAM = 4
OPUS_SYSTEMS = ["opus-t2t", "opus-hf", "opus-ct2", "opus-t2t-int8", "opus-ct2-int8"]
SIZES = {"small": dict(dim=256, layers=3, heads=4, ff_dim=1024), "base": dict(dim=512, layers=6, heads=8, ff_dim=2048)}
VOCAB, OUT_LEN, BATCH = 8000, 30, 32
WHISPER_SYSTEMS = ["whisper-t2t", "whisper-hf", "whisper-ct2", "whisper-t2t-int8", "whisper-ct2-int8"]
WHISPER_BATCH = 8


def sources(n: int, seed: int = 0) -> list[list[int]]:
    import random
    rng = random.Random(seed)
    return [[rng.randrange(4, VOCAB) for _ in range(rng.randint(15, 30))] for _ in range(n)]


def marian_config(size: str, pad: int = 0, eos: int = 3, start: int = 2):
    from transformers import MarianConfig
    c = SIZES[size]
    return MarianConfig(vocab_size=VOCAB, decoder_vocab_size=VOCAB, d_model=c["dim"], encoder_layers=c["layers"],
                        decoder_layers=c["layers"], encoder_attention_heads=c["heads"],
                        decoder_attention_heads=c["heads"], encoder_ffn_dim=c["ff_dim"], decoder_ffn_dim=c["ff_dim"],
                        activation_function="relu", max_position_embeddings=512, pad_token_id=pad, eos_token_id=eos,
                        decoder_start_token_id=start, bos_token_id=start, scale_embedding=True,
                        share_encoder_decoder_embeddings=True, tie_word_embeddings=True, normalize_before=False)


# --------------------------------------------------------------------------- workers (one process each)


def t2t_model(size: str):
    """t2t's Transformer of a size, post-norm as Marian's, random weights from seed 0."""
    import torch

    from t2t.models.base import ModelSpec
    from t2t.models.transformer import Transformer, TransformerOptions
    torch.manual_seed(0)
    c = SIZES[size]
    return Transformer(TransformerOptions(dim=c["dim"], layers=c["layers"], heads=c["heads"], ff_dim=c["ff_dim"],
                                          norm="post", dropout=0.0), ModelSpec(VOCAB, VOCAB, shared_vocab=True)).eval()


def time_ct2(folder: Path, tokens: list[list[str]], beam: int, threads: int, compute_type: str) -> dict:
    """Sentences/s of a CTranslate2 model folder on `tokens`, after a warm-up batch."""
    import ctranslate2
    translator = ctranslate2.Translator(str(folder), device="cpu", compute_type=compute_type,
                                        intra_threads=threads, inter_threads=1)

    def run(batch_tokens):
        out = translator.translate_batch(batch_tokens, beam_size=beam, max_batch_size=BATCH,
                                         min_decoding_length=OUT_LEN, max_decoding_length=OUT_LEN,
                                         length_penalty=1.0)
        return sum(len(r.hypotheses[0]) for r in out)

    run(tokens[:BATCH])
    t = time.perf_counter()
    produced = run(tokens)
    elapsed = time.perf_counter() - t
    return {"sentences_per_s": len(tokens) / elapsed, "tokens_per_sentence": produced / len(tokens)}


def worker_t2t(size: str, beam: int, threads: int, n: int, precision: str = "fp32") -> dict:
    import torch

    from t2t.options import DecodeOptions
    torch.set_num_threads(threads)
    model = t2t_model(size)
    if precision == "bf16":                      # what decode.precision: bf16 does: bf16 weights
        model = model.to(torch.bfloat16)
    elif precision == "int8":                    # what decode.precision: int8 does
        from t2t.device import int8_copy
        model = int8_copy(model)
    opts = DecodeOptions(beam=beam, min_len=OUT_LEN, max_len_a=0.0, max_len_b=OUT_LEN + 1, length_penalty=1.0)
    return time_t2t(model, opts, None, sources(n))


def time_t2t(model, opts, specials, data: list[list[int]], eos: list[int] = ()) -> dict:
    """Sentences/s of t2t's search over id sources (each followed by `eos`), in length-sorted
    batches as t2t makes them, after a warm-up batch."""
    import torch

    from t2t.search import Specials, generate
    specials = specials or Specials()
    data = [s + list(eos) for s in data]
    n = len(data)
    order = sorted(range(n), key=lambda i: len(data[i]))         # t2t sorts by length before batching

    def run(count):
        produced = 0
        for start in range(0, count, BATCH):
            idx = order[start: start + BATCH] if count == n else list(range(start, min(count, start + BATCH)))
            lengths = torch.tensor([len(data[i]) for i in idx])
            src = torch.full((len(idx), int(lengths.max())), specials.pad, dtype=torch.long)
            for b, i in enumerate(idx):
                src[b, : len(data[i])] = torch.tensor(data[i])
            out = generate(model, src, lengths, opts, specials)
            produced += sum(len(h[0].tokens) for h in out)
        return produced

    run(BATCH)                                                   # warm-up
    t = time.perf_counter()
    tokens = run(n)
    elapsed = time.perf_counter() - t
    return {"sentences_per_s": n / elapsed, "tokens_per_sentence": tokens / n}


# --------------------------------------------------------------------------- an opus-mt-shaped pretrained folder
# Helsinki-NLP/opus-mt-de-en's shape (6+6 layers, d 512, 8 heads, ff 2048, swish, vocabulary 58101) with
# random weights (weights do not change speed): every system loads the same folder, decodes the same
# id sources (each ending in </s>, as Marian's tokenizer makes them) with beam 4 and OUT_LEN tokens.
OPUS_VOCAB = 58101


def opus_folder(directory: Path) -> Path:
    import torch
    from transformers import MarianConfig, MarianMTModel
    torch.manual_seed(0)
    config = MarianConfig(vocab_size=OPUS_VOCAB, decoder_vocab_size=OPUS_VOCAB, d_model=512, encoder_layers=6,
                          decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
                          decoder_ffn_dim=2048, activation_function="swish", max_position_embeddings=512,
                          pad_token_id=OPUS_VOCAB - 1, eos_token_id=0, decoder_start_token_id=OPUS_VOCAB - 1,
                          forced_eos_token_id=0, scale_embedding=True, dropout=0.1)
    MarianMTModel(config).save_pretrained(directory)
    _write_marian_tokenizer(directory, OPUS_VOCAB)
    return directory


def opus_sources(n: int) -> list[list[int]]:
    import random
    rng = random.Random(0)
    return [[rng.randrange(3, OPUS_VOCAB - 1) for _ in range(rng.randint(15, 30))] for _ in range(n)]


def worker_opus_t2t(folder: str, beam: int, threads: int, n: int, precision: str) -> dict:
    import torch

    from t2t.pipeline import load
    torch.set_num_threads(threads)
    pipe = load(folder, device="cpu")
    opts = pipe.decode_options(beam=beam, min_len=OUT_LEN, max_len_a=0.0, max_len_b=OUT_LEN + 1,
                               precision=precision)
    model = pipe.decoding_model(precision)
    return time_t2t(model, opts, pipe.specials, opus_sources(n), eos=[pipe.specials.eos])


def worker_opus_hf(folder: str, beam: int, threads: int, n: int) -> dict:
    import torch
    from transformers import MarianMTModel
    torch.set_num_threads(threads)
    model = MarianMTModel.from_pretrained(folder).eval()
    return time_hf(model, opus_sources(n), beam, pad=OPUS_VOCAB - 1, eos=0, min_new_tokens=OUT_LEN,
                   max_new_tokens=OUT_LEN + 1)


def worker_opus_ct2(folder: str, beam: int, threads: int, n: int, compute_type: str) -> dict:
    import ctranslate2
    with tempfile.TemporaryDirectory() as tmp:
        ctranslate2.converters.TransformersConverter(folder).convert(str(Path(tmp) / "ct2"), quantization=None)
        tokens = [[f"w{i}" for i in s] + ["</s>"] for s in opus_sources(n)]
        return time_ct2(Path(tmp) / "ct2", tokens, beam, threads, compute_type)


# --------------------------------------------------------------------------- a whisper-tiny-shaped folder


def whisper_folder(directory: Path) -> Path:
    """openai/whisper-tiny's shape with random weights, and a small byte-level BPE whose special
    tokens the config's ids name (speed does not depend on which token is which)."""
    import torch
    sys.path.insert(0, str(HERE.parent / "tests"))
    import hf_folders
    folder = hf_folders.whisper(directory, d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                                decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
                                max_target_positions=448, vocab_size=51865)
    torch.manual_seed(0)
    return folder


def whisper_features(n: int):
    """Log-mel features (n, 3000, 80) of recordings of 2 to 10 s."""
    import numpy as np
    import torch

    from t2t.pretrained.whisper import log_mel
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        t = np.arange(int(16000 * rng.uniform(2, 10))) / 16000
        x = sum(0.1 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) for _ in range(3)) + 0.01 * rng.standard_normal(len(t))
        out.append(log_mel(torch.from_numpy(x.astype(np.float32))))
    return torch.stack(out)


def worker_whisper_t2t(folder: str, beam: int, threads: int, n: int, precision: str) -> dict:
    import torch

    from t2t.pipeline import load
    from t2t.search import generate
    torch.set_num_threads(threads)
    pipe = load(folder, device="cpu")
    opts = pipe.decode_options(beam=beam, min_len=OUT_LEN, max_len_b=OUT_LEN + 1, target_lang="en", precision=precision)
    model, sp = pipe.decoding_model(precision), pipe.tgt_tok.specials("en")
    feats = whisper_features(n)

    def run(x):
        produced = 0
        for start in range(0, len(x), WHISPER_BATCH):
            batch = x[start: start + WHISPER_BATCH]
            out = generate(model, batch, torch.full((len(batch),), batch.shape[1]), opts, sp)
            produced += sum(len(h[0].tokens) for h in out)
        return produced
    return _timed(run, feats)


def worker_whisper_hf(folder: str, beam: int, threads: int, n: int) -> dict:
    import torch
    from transformers import WhisperForConditionalGeneration
    torch.set_num_threads(threads)
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    feats = whisper_features(n).transpose(1, 2).contiguous()

    def run(x):
        produced = 0
        for start in range(0, len(x), WHISPER_BATCH):
            with torch.no_grad():
                out = model.generate(x[start: start + WHISPER_BATCH], language="en", task="transcribe", num_beams=beam,
                                     min_new_tokens=OUT_LEN, max_new_tokens=OUT_LEN + 1)
            produced += int((out != model.config.eos_token_id).sum())
        return produced
    return _timed(run, feats)


def worker_whisper_ct2(folder: str, beam: int, threads: int, n: int, compute_type: str) -> dict:
    import ctranslate2

    from t2t.export import export
    from t2t.pipeline import load
    sp = load(folder, device="cpu").tgt_tok.specials("en")
    feats = whisper_features(n).transpose(1, 2).contiguous().numpy()
    with tempfile.TemporaryDirectory() as tmp:
        model = ctranslate2.models.Whisper(str(export(folder, Path(tmp) / "ct2", format="ctranslate2")),
                                           device="cpu", compute_type=compute_type, intra_threads=threads)
        prompt = [sp.bos, *sp.prompt]

        def run(x):
            produced = 0
            for start in range(0, len(x), WHISPER_BATCH):
                chunk = x[start: start + WHISPER_BATCH]
                # CTranslate2 4.8's Whisper puts out at most max_length / 2 tokens (measured: 10 of 20, 30 of 60)
                out = model.generate(ctranslate2.StorageView.from_array(chunk), [prompt] * len(chunk), beam_size=beam,
                                     max_length=2 * OUT_LEN, suppress_tokens=[-1, sp.eos])
                produced += sum(len(r.sequences_ids[0]) for r in out)
            return produced
        return _timed(run, feats)


def _timed(run, data) -> dict:
    run(data[:WHISPER_BATCH])                                      # warm-up
    t = time.perf_counter()
    tokens = run(data)
    elapsed = time.perf_counter() - t
    return {"sentences_per_s": len(data) / elapsed, "tokens_per_sentence": tokens / len(data)}


def worker_hf(size: str, beam: int, threads: int, n: int) -> dict:
    import torch
    from transformers import MarianMTModel
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MarianMTModel(marian_config(size)).eval()
    return time_hf(model, sources(n), beam, pad=0, eos=3, min_new_tokens=OUT_LEN, max_new_tokens=OUT_LEN,
                   early_stopping=True)


def time_hf(model, data: list[list[int]], beam: int, pad: int, eos: int, **generate_args) -> dict:
    """Sentences/s of transformers' generate over id sources (each followed by </s>), in batches of
    BATCH in the given order, after a warm-up batch."""
    import torch

    def run(items):
        produced = 0
        for start in range(0, len(items), BATCH):
            chunk = items[start: start + BATCH]
            width = max(len(s) for s in chunk) + 1
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for b, s in enumerate(chunk):
                ids[b, : len(s) + 1] = torch.tensor(s + [eos])
                mask[b, : len(s) + 1] = 1
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=mask, num_beams=beam, do_sample=False,
                                     **generate_args)
            produced += int(((out[:, 1:] != pad) & (out[:, 1:] != eos)).sum())
        return produced

    run(data[:BATCH])
    t = time.perf_counter()
    tokens = run(data)
    elapsed = time.perf_counter() - t
    return {"sentences_per_s": len(data) / elapsed, "tokens_per_sentence": tokens / len(data)}


def worker_ct2(size: str, beam: int, threads: int, n: int, compute_type: str = "float32") -> dict:
    import ctranslate2
    import torch
    from transformers import MarianMTModel
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir, ct2_dir = Path(tmp) / "marian", Path(tmp) / "ct2"
        # Marian's own convention, which the converter expects: </s> = 0, <pad> = the last id
        MarianMTModel(marian_config(size, pad=VOCAB - 1, eos=0, start=VOCAB - 1)).save_pretrained(hf_dir)
        _write_marian_tokenizer(hf_dir)
        ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(str(ct2_dir), quantization=None)
        tokens = [[f"w{min(i, VOCAB - 2)}" for i in s] + ["</s>"] for s in sources(n)]
        return time_ct2(ct2_dir, tokens, beam, threads, compute_type)


def worker_t2t_ct2(size: str, beam: int, threads: int, n: int, compute_type: str = "float32") -> dict:
    """t2t's own model (the one worker_t2t decodes) exported with `t2t export` and decoded by CTranslate2."""
    from t2t.export import write_ctranslate2
    from t2t.vocab import SPECIALS, Vocab
    vocab = Vocab(list(SPECIALS) + [f"w{i}" for i in range(4, VOCAB)])
    with tempfile.TemporaryDirectory() as tmp:
        write_ctranslate2(t2t_model(size), vocab, vocab, Path(tmp) / "ct2")
        tokens = [[vocab.tokens[i] for i in s] for s in sources(n)]
        return time_ct2(Path(tmp) / "ct2", tokens, beam, threads, compute_type)


def _write_marian_tokenizer(directory: Path, size: int = VOCAB) -> None:
    """A MarianTokenizer for the random model: vocab w3.. and a small SentencePiece model
    (CTranslate2's converter reads the vocabulary through the tokenizer)."""
    import io

    import sentencepiece as spm
    vocab = {"</s>": 0, "<unk>": 1, "<s>": 2, **{f"w{i}": i for i in range(3, size - 1)}, "<pad>": size - 1}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["w1 w2 w3 w4 w5 w6 w7 w8 w9"] * 50), model_writer=model,
                                   vocab_size=20, hard_vocab_limit=False, minloglevel=2)
    for name in ("source.spm", "target.spm"):
        (directory / name).write_bytes(model.getvalue())
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "MarianTokenizer",
                                                                 "source_lang": "xx", "target_lang": "yy"}))


def run_worker(args: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--worker", *args, "--threads", str(threads)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default="small,base")
    p.add_argument("--beams", default="1,5")
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--systems", default="t2t,hf,ct2,ct2-int8,t2t-bf16,t2t-int8,t2t-ct2,t2t-ct2-int8")
    p.add_argument("--worker", nargs=3, metavar=("SYSTEM", "SIZE", "BEAM"))
    p.add_argument("--folder", help="(workers) the opus-shaped pretrained folder")
    p.add_argument("--out", default=str(HERE / "results" / "decode_speed"))
    args = p.parse_args()
    if args.worker:
        system, size, beam = args.worker
        n = args.sentences if size == "small" else args.sentences // 2 if size != "whisper" else args.sentences // 8
        fn = {"t2t": lambda: worker_t2t(size, int(beam), args.threads, n),
              "t2t-bf16": lambda: worker_t2t(size, int(beam), args.threads, n, "bf16"),
              "t2t-int8": lambda: worker_t2t(size, int(beam), args.threads, n, "int8"),
              "t2t-ct2": lambda: worker_t2t_ct2(size, int(beam), args.threads, n),
              "t2t-ct2-int8": lambda: worker_t2t_ct2(size, int(beam), args.threads, n, "int8"),
              "hf": lambda: worker_hf(size, int(beam), args.threads, n),
              "ct2": lambda: worker_ct2(size, int(beam), args.threads, n),
              "ct2-int8": lambda: worker_ct2(size, int(beam), args.threads, n, "int8"),
              "opus-t2t": lambda: worker_opus_t2t(args.folder, int(beam), args.threads, n, "fp32"),
              "opus-t2t-int8": lambda: worker_opus_t2t(args.folder, int(beam), args.threads, n, "int8"),
              "opus-hf": lambda: worker_opus_hf(args.folder, int(beam), args.threads, n),
              "opus-ct2": lambda: worker_opus_ct2(args.folder, int(beam), args.threads, n, "float32"),
              "opus-ct2-int8": lambda: worker_opus_ct2(args.folder, int(beam), args.threads, n, "int8"),
              "whisper-t2t": lambda: worker_whisper_t2t(args.folder, int(beam), args.threads, n, "fp32"),
              "whisper-t2t-int8": lambda: worker_whisper_t2t(args.folder, int(beam), args.threads, n, "int8"),
              "whisper-hf": lambda: worker_whisper_hf(args.folder, int(beam), args.threads, n),
              "whisper-ct2": lambda: worker_whisper_ct2(args.folder, int(beam), args.threads, n, "float32"),
              "whisper-ct2-int8": lambda: worker_whisper_ct2(args.folder, int(beam), args.threads, n, "int8")}[system]
        print(json.dumps(fn()))
        return
    rows = []
    for size in args.sizes.split(","):
        beams = [str(OPUS_BEAM)] if size == "opus" else args.beams.split(",")
        systems = {"opus": OPUS_SYSTEMS, "whisper": WHISPER_SYSTEMS}.get(size) or args.systems.split(",")
        with tempfile.TemporaryDirectory() as tmp:
            extra = []
            if size == "opus":
                extra = ["--folder", str(opus_folder(Path(tmp) / "opus-mt-shaped"))]
            elif size == "whisper":
                extra = ["--folder", str(whisper_folder(Path(tmp) / "whisper-tiny-shaped"))]
            for beam in beams:
                for system in systems:
                    r = run_worker([system, size, beam, "--sentences", str(args.sentences), *extra], args.threads)
                    rows.append({"system": system, "size": size, "beam": int(beam), **r})
                    print(json.dumps(rows[-1]), flush=True)
    ratios = {}
    for size in args.sizes.split(","):
        for beam in ([str(OPUS_BEAM)] if size == "opus" else args.beams.split(",")):
            pick = {r["system"]: r.get("sentences_per_s") for r in rows if r["size"] == size and r["beam"] == int(beam)}
            pairs = [("t2t", "hf"), ("t2t", "ct2"), ("t2t-int8", "ct2"), ("t2t-int8", "t2t"), ("t2t-ct2", "ct2"),
                     ("t2t-ct2-int8", "ct2-int8"), ("opus-t2t", "opus-hf"), ("opus-t2t", "opus-ct2"),
                     ("opus-t2t-int8", "opus-ct2-int8"), ("whisper-t2t", "whisper-hf"),
                     ("whisper-t2t", "whisper-ct2"), ("whisper-t2t-int8", "whisper-ct2-int8")]
            for ours, other in pairs:
                if pick.get(ours) and pick.get(other):
                    ratios[f"{size}/beam{beam}: {ours} / {other}"] = pick[ours] / pick[other]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "threads": args.threads, "batch": BATCH, "output_tokens": OUT_LEN, "rows": rows, "ratios": ratios}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Decoding speed ({result['date']}, {result['machine']}, {args.threads} threads, batches of {BATCH}"
             f"{f' (whisper: {WHISPER_BATCH} recordings of 30 s)' if 'whisper' in args.sizes.split(',') else ''}, "
             f"{OUT_LEN} output tokens forced)", "", "| size | beam | system | sentences/s |", "|---|---|---|---|"]
    for r in rows:
        value = f"{r['sentences_per_s']:.1f}" if "sentences_per_s" in r else f"error: {r['error']}"
        lines.append(f"| {r['size']} | {r['beam']} | {r['system']} | {value} |")
    lines += ["", "| comparison | ratio |", "|---|---|"] + [f"| {k} | {v:.2f}x |" for k, v in ratios.items()]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
