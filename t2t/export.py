"""`t2t export`: a trained Transformer run as a CTranslate2 model, or a run that started from a
pretrained folder written back in that format (`--format hf`, see `t2t.pretrained`).

    t2t export runs/multi30k_de_en --format ctranslate2 exported/ [--quantization int8]

The weights are mapped onto CTranslate2's own model specification (`ctranslate2.specs.TransformerSpec`)
and written by its converter, so the folder loads with `ctranslate2.Translator(folder)`. Beside the
model the folder holds `decoding.json` (the recipe's decoding settings as `translate_batch`
arguments) and, for SentencePiece runs, `source.spm` / `target.spm`. What CTranslate2's Transformer
cannot express (RNNs, copying, CTC heads, feature sources, Conformer layers, ensembles) is refused
before anything is written.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np

from t2t import pretrained
from t2t.errors import T2TError
from t2t.models.ensemble import Ensemble
from t2t.models.transformer import Transformer
from t2t.pipeline import Pipeline
from t2t.pretrained.tokenizer import PretrainedTokenizer
from t2t.vocab import Vocab

FORMATS = ("ctranslate2", "hf")
ACTIVATIONS = {"relu": "RELU", "gelu": "GELU", "gelu_tanh": "GELUTanh", "silu": "SWISH"}   # CTranslate2's names
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")


def export(run: str | os.PathLike, out: str | os.PathLike, format: str = "ctranslate2",
           quantization: str | None = None, force: bool = False) -> Path:
    """Export a run directory or checkpoint to `out`; returns the folder written."""
    if format not in FORMATS:
        raise T2TError(f"export --format: unknown format '{format}'; use {', '.join(FORMATS)}")
    pipe = Pipeline.from_checkpoint(run, device="cpu")
    if format == "hf":
        if quantization:
            raise T2TError("export --format hf writes the weights as trained; --quantization is for ctranslate2")
        return export_hf(pipe, out, force)
    return export_ctranslate2(pipe, out, quantization, force)


def export_hf(pipe: Pipeline, out: str | os.PathLike, force: bool = False) -> Path:
    """A run that started from a pretrained folder, written back in that folder's format: its
    config and tokenizer files byte for byte, the trained weights as `model.safetensors`."""
    if isinstance(pipe.model, Ensemble):
        raise T2TError("export: an ensemble cannot be exported as one model; export each run")
    if not isinstance(pipe.tgt_tok, PretrainedTokenizer):
        raise T2TError("export --format hf: this run did not start from a pretrained folder (model.pretrained), "
                       "and no transformers model computes what t2t's own Transformer does (its positions, "
                       "norms and embeddings differ); export it with --format ctranslate2")
    return pretrained.export_folder(pipe.model.state_dict(), pipe.tgt_tok.state_dict(), out, force=force)


def is_whisper(pipe: Pipeline) -> bool:
    """A run of a Whisper folder (exported as CTranslate2's Whisper model)."""
    return isinstance(pipe.tgt_tok, pretrained.whisper.WhisperTokenizer)


def check_exportable(pipe: Pipeline) -> None:
    """Refuse, naming the reason, a model whose CTranslate2 Transformer would compute something else."""
    model = pipe.model
    if isinstance(model, Ensemble):
        raise T2TError("export: an ensemble cannot be exported as one model; export each run")
    if type(model) is not Transformer:
        raise T2TError(f"export: model.arch '{pipe.recipe.model.arch}' cannot be exported to CTranslate2; "
                       f"only the Transformer (model.arch: transformer) can")
    o = model.options
    whisper = is_whisper(pipe)
    refusals = [(model.spec.feature_dim is not None and not whisper, "its source is feature frames (a speech "
                 "task), which CTranslate2's Transformer does not take (a Whisper folder's model it takes)"),
                (o.copy, "model.copy: the pointer-generator's copy distribution has no CTranslate2 counterpart"),
                (o.ctc_weight > 0, "model.ctc_weight: the CTC head has no CTranslate2 counterpart"),
                (o.conv_kernel > 0, "model.conv_kernel: Conformer layers have no CTranslate2 counterpart"),
                (o.activation not in ACTIVATIONS, f"model.activation {o.activation}")]
    for refused, why in refusals:
        if refused:
            raise T2TError(f"export: this model cannot be exported to CTranslate2: {why}")


def export_ctranslate2(pipe: Pipeline, out: str | os.PathLike, quantization: str | None = None,
                       force: bool = False) -> Path:
    try:
        import ctranslate2.converters  # noqa: F401
    except ImportError:
        raise T2TError("export --format ctranslate2 needs CTranslate2: pip install 't2t[export]'") from None
    check_exportable(pipe)
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise T2TError(f"export --quantization: unknown type '{quantization}'; use {', '.join(QUANTIZATIONS)}")
    out = Path(out)
    if out.exists() and not force:
        raise T2TError(f"export: {out} exists; remove it or pass --force")

    # written beside and renamed, so that a failed export leaves nothing under the name
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if is_whisper(pipe):
            write_spec(whisper_spec(pipe.model, pipe.tgt_tok), tmp, quantization)
            defaults = whisper_decoding(pipe)
        else:
            write_ctranslate2(pipe.model, pipe.src_tok.vocab, pipe.tgt_tok.vocab, tmp, quantization)
            defaults = decoding_defaults(pipe)
        (tmp / "decoding.json").write_text(json.dumps(defaults, indent=1) + "\n")
        for name, data in tokenizer_files(pipe).items():
            (tmp / name).write_bytes(data)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_ctranslate2(model, src_vocab: Vocab, tgt_vocab: Vocab, out: str | os.PathLike,
                      quantization: str | None = None) -> None:
    """Write a t2t Transformer (checked with `check_exportable`) as a CTranslate2 model folder
    through CTranslate2's own converter."""
    write_spec(transformer_spec(model, src_vocab, tgt_vocab), out, quantization)


def write_spec(spec, out: str | os.PathLike, quantization: str | None = None) -> None:
    """A CTranslate2 model spec with its weights set, written by CTranslate2's own converter."""
    from ctranslate2.converters.converter import Converter

    class T2TConverter(Converter):
        def _load(self):
            return spec

    T2TConverter().convert(str(out), quantization=quantization, force=True)


def whisper_spec(model, tokenizer):
    """A Whisper folder's model (its t2t Transformer) as a `ctranslate2.specs.WhisperSpec`, with the
    generation config's suppressed and begin-suppressed tokens and language ids."""
    from ctranslate2.specs import whisper_spec as ws
    model = copy.deepcopy(model).float()
    o = model.options
    spec = ws.WhisperSpec(len(model.encoder), o.heads, len(model.decoder), o.heads)
    w = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    enc, dec = spec.encoder, spec.decoder
    for i, conv in ((1, enc.conv1), (2, enc.conv2)):
        conv.weight, conv.bias = w[f"src_embed.conv{i}.weight"], w[f"src_embed.conv{i}.bias"]
    enc.position_encodings.encodings = w["src_pos.table"]
    dec.position_encodings.encodings = w["tgt_pos.table"]
    dec.embeddings.weight = w["tgt_embed.weight"]
    _layers(spec, w, o)
    dec.projection.weight = w["out.weight"]
    gen = tokenizer.generation_config()
    spec.config.suppress_ids = list(gen.get("suppress_tokens") or [])
    spec.config.suppress_ids_begin = list(gen.get("begin_suppress_tokens") or [])
    spec.config.lang_ids = sorted(tokenizer.languages.values())
    heads = gen.get("alignment_heads") or [(i, h) for i in range(len(model.decoder) // 2, len(model.decoder))
                                           for h in range(o.heads)]
    spec.config.alignment_heads = [tuple(x) for x in heads]
    spec.register_vocabulary(list(tokenizer.vocab.tokens))
    return spec


def transformer_spec(model, src_vocab: Vocab, tgt_vocab: Vocab):
    """A t2t Transformer as a `ctranslate2.specs.TransformerSpec` with its weights set."""
    from ctranslate2.specs import common_spec, transformer_spec as ts
    model = copy.deepcopy(model).float()
    o = model.options
    pre = o.norm == "pre"
    relative = o.positions == "relative"
    spec = ts.TransformerSpec.from_config(
        (len(model.encoder), len(model.decoder)), o.heads, pre_norm=pre,
        activation=getattr(common_spec.Activation, ACTIVATIONS[o.activation]), layernorm_embedding=o.embed_norm,
        relative_attention_bias=relative, ffn_glu=o.ff_gated, rms_norm=o.norm_type == "rms")
    w = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    if not relative:
        # the rows positions 0, 1, ... read (a table that starts at row `offset` loses the rows before)
        w.update({f"{side}_pos.table": getattr(model, f"{side}_pos").table[o.position_offset:].detach().float().numpy()
                  for side in ("src", "tgt")})

    enc, dec = spec.encoder, spec.decoder
    enc.embeddings[0].weight = w["src_embed.embed.weight"]
    dec.embeddings.weight = w["tgt_embed.weight"]
    if not relative:
        enc.position_encodings.encodings = w["src_pos.table"]      # t2t's table (sin/cos interleaved)
        dec.position_encodings.encodings = w["tgt_pos.table"]
    enc.scale_embeddings = dec.scale_embeddings = o.embed_scale     # both sides scale by sqrt(dim), or neither
    if o.output_scale:
        dec.scale_outputs = o.dim ** -0.5
    if o.embed_norm:
        _norm(w, enc.layernorm_embedding, "src_embed_norm")
        _norm(w, dec.layernorm_embedding, "tgt_embed_norm")
    _layers(spec, w, o)
    dec.projection.weight = w["out.weight"]
    if "out.bias" in w or "logit_bias" in w:          # a pretrained model's fixed output bias
        dec.projection.bias = w.get("out.bias", 0) + w.get("logit_bias", 0)
    spec.config.layer_norm_epsilon = float(o.norm_eps)
    tgt_tokens = tgt_vocab.tokens
    spec.register_source_vocabulary(list(src_vocab.tokens))
    spec.register_target_vocabulary(list(tgt_tokens))
    v = tgt_vocab
    spec.config.unk_token, spec.config.bos_token = tgt_tokens[v.unk], tgt_tokens[v.bos]
    spec.config.eos_token, spec.config.decoder_start_token = tgt_tokens[v.eos], tgt_tokens[v.bos]
    return spec


def _linear(w: dict, dst, name: str) -> None:
    dst.weight = w[f"{name}.weight"]
    if f"{name}.bias" in w:
        dst.bias = w[f"{name}.bias"]


def _norm(w: dict, dst, name: str) -> None:
    dst.gamma = w[f"{name}.weight"]
    if f"{name}.bias" in w:                                     # (RMS norms have none)
        dst.beta = w[f"{name}.bias"]


def _layers(spec, w: dict, o) -> None:
    """The encoder and decoder layers of a t2t Transformer's weights `w` into a CTranslate2 spec
    (a TransformerSpec's or a WhisperSpec's), with the final norms of a pre-norm model."""
    relative = o.positions == "relative"

    def attention(dst, side):                                   # T5: unscaled scores, relative biases
        if not o.attention_scale:
            dst.queries_scale = 1.0
        if relative and side:
            dst.relative_attention_bias = w[f"{side}_rel.embed.weight"]
            dst.relative_attention_max_distance = np.dtype("int32").type(o.relative_max_distance)

    def ffn(dst, p):
        _linear(w, dst.linear_0, f"{p}.ff.fc1")
        if o.ff_gated:
            _linear(w, dst.linear_0_noact, f"{p}.ff.gate")
        _linear(w, dst.linear_1, f"{p}.ff.fc2")

    enc, dec = spec.encoder, spec.decoder
    if o.norm == "pre":
        _norm(w, enc.layer_norm, "enc_norm")
        _norm(w, dec.layer_norm, "dec_norm")
    for i, layer in enumerate(enc.layer):
        p = f"encoder.{i}"
        _linear(w, layer.self_attention.linear[0], f"{p}.attn.qkv")    # fused q, k, v: the same layout
        _linear(w, layer.self_attention.linear[1], f"{p}.attn.out")
        _norm(w, layer.self_attention.layer_norm, f"{p}.norm1")
        attention(layer.self_attention, "src")
        ffn(layer.ffn, p)
        _norm(w, layer.ffn.layer_norm, f"{p}.norm2")
    for i, layer in enumerate(dec.layer):
        p = f"decoder.{i}"
        _linear(w, layer.self_attention.linear[0], f"{p}.self_attn.qkv")
        _linear(w, layer.self_attention.linear[1], f"{p}.self_attn.out")
        _norm(w, layer.self_attention.layer_norm, f"{p}.norm1")
        attention(layer.self_attention, "tgt")
        _linear(w, layer.attention.linear[0], f"{p}.cross_attn.q")
        _linear(w, layer.attention.linear[1], f"{p}.cross_attn.kv")     # fused k, v
        _linear(w, layer.attention.linear[2], f"{p}.cross_attn.out")
        _norm(w, layer.attention.layer_norm, f"{p}.norm2")
        attention(layer.attention, None)
        ffn(layer.ffn, p)
        _norm(w, layer.ffn.layer_norm, f"{p}.norm3")


def whisper_decoding(pipe: Pipeline) -> dict:
    """The recipe's decoding settings as `ctranslate2.models.Whisper.generate` arguments, and the
    prompt (its tokens; the language's where the recipe names it)."""
    d, tok = pipe.recipe.decode, pipe.tgt_tok
    lang = d.target_lang or tok.lang
    v = tok.vocab
    prompt = [v.tokens[v.bos]] + ([v.tokens[i] for i in tok.prompt(lang)] if lang or not tok.languages else [])
    notes = [] if lang or not tok.languages else [
        f"put the speech's language (ctranslate2.models.Whisper.detect_language finds it, as t2t does) and the "
        f"task after {prompt[0]} in each prompt, e.g. "
        f"{[prompt[0], '<|en|>', '<|transcribe|>', v.tokens[tok.no_timestamps]]}"]
    if d.sampling or d.mbr or d.no_repeat_ngram_size or d.min_len:
        notes.append("decode.sampling, mbr, no_repeat_ngram_size and min_len are not carried over")
    # CTranslate2 4.8's Whisper puts out at most max_length / 2 tokens (measured: 10 of 20, 30 of 60)
    args = {"beam_size": d.beam, "num_hypotheses": d.nbest, "length_penalty": d.length_penalty,
            "max_length": 2 * int(d.max_len_b), "return_scores": True}
    return {"generate": args, "prompt_tokens": prompt, "features": "whisper log-mel, (batch, n_mels, 3000)",
            "tokenizer": {"name": tok.name, "files": sorted(tokenizer_files(pipe))}, "task": pipe.recipe.task,
            "notes": notes}


def decoding_defaults(pipe: Pipeline) -> dict:
    """The recipe's decoding settings as `ctranslate2.Translator.translate_batch` arguments, with
    what does not carry over said in `notes`."""
    d = pipe.recipe.decode
    limit = pipe.model.options.max_positions
    eos_at_limit = d.rules == "t2t" or pipe.specials.forced_eos
    args = {"beam_size": d.beam, "num_hypotheses": d.nbest, "min_decoding_length": d.min_len,
            # t2t's limit counts </s> where it is forced there; CTranslate2's does not
            "max_decoding_length": min(limit, int(d.max_len_b + d.max_len_a * limit)) - int(eos_at_limit),
            "max_input_length": limit, "no_repeat_ngram_size": d.no_repeat_ngram_size,
            "length_penalty": d.length_penalty, "return_scores": True}
    if d.sampling:
        args.update(sampling_topk=d.top_k or 0, sampling_topp=d.top_p, sampling_temperature=d.temperature)
    notes = []
    if d.beam > 1 and d.length_penalty and d.rules == "t2t":
        notes.append(f"t2t divides scores by the GNMT penalty ((5 + length) / 6) ** {d.length_penalty}; "
                     f"CTranslate2 by length ** length_penalty: beam outputs can differ")
    if d.max_len_a:
        notes.append(f"t2t's output limit grows with the source ({d.max_len_a} x source length + {d.max_len_b}); "
                     f"max_decoding_length is that limit for the longest source the model takes")
    if d.unk_penalty or d.mbr or d.ctc_weight:
        notes.append("decode.unk_penalty, decode.mbr and decode.ctc_weight have no CTranslate2 counterpart")
    tok = pipe.recipe.tokenizer
    files = sorted(tokenizer_files(pipe))
    empty = pipe.src_tok.encode("") if pipe.src_tok is not None else []
    if empty:                                    # what the tokenizer adds around every source
        v = pipe.src_tok.vocab
        suffix = empty[-1:] if empty[-1] == v.eos else []
        prefix = empty[: len(empty) - len(suffix)]
        said = " and ".join(f"{where} {' '.join(v.tokens[i] for i in ids)}" for where, ids in
                            (("begin it with", prefix), ("end it with", suffix)) if ids)
        notes.append(f"as the model's tokenizer does for each source's tokens, {said}")
    if pipe.specials.forced_bos is not None:
        first = pipe.tgt_tok.vocab.tokens[pipe.specials.forced_bos]
        notes.append(f"outputs begin with {first}: pass target_prefix=[['{first}']] for each source")
    return {"translate_batch": args, "tokenizer": {"name": tok.name, "lowercase": bool(getattr(tok, "lowercase", False)),
                                                    "files": files},
            "task": pipe.recipe.task, "notes": notes}


def tokenizer_files(pipe: Pipeline) -> dict[str, bytes]:
    """The files that tokenize for an exported model: t2t's SentencePiece models, or a pretrained
    folder's tokenizer files as they came."""
    if isinstance(pipe.tgt_tok, PretrainedTokenizer):
        return {k: v for k, v in pipe.tgt_tok.files.items() if k not in ("config.json", "generation_config.json")}
    out = {}
    for side, tok in (("source", pipe.src_tok), ("target", pipe.tgt_tok)):
        model = getattr(tok, "model_bytes", None)
        if model:
            out[f"{side}.spm"] = model
    return out
