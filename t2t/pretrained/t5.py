"""T5, T5 v1.1, Flan-T5 and mT5 (`model_type: t5` / `mt5`): pre-norm Transformer with T5's RMS norm
(no bias, epsilon 1e-6), relative position biases (one table per side, shared by its layers), no
biases in any projection, unscaled attention scores and embeddings, a ReLU or gated-GELU
feed-forward (`feed_forward_proj`), heads of `d_kv` features; with tied embeddings the decoder's
output is scaled by d_model ** -0.5 (Flan-T5 and mT5 have their own output layer). The tokenizer
(`tokenizer.json`) ends every sequence with </s>; the decoder starts from <pad>. A task prefix
("translate English to German: ") is a recipe option, `tokenizer.source_prefix`."""

from __future__ import annotations

import dataclasses

import torch

from t2t.errors import T2TError
from t2t.options import TokenizerOptions, option
from t2t.pretrained import mapping
from t2t.pretrained.tokenizer import JsonTokenizer

MODEL_TYPES = ("t5", "mt5")
# transformers' T5Config defaults (mT5's differ: mt5_defaults)
DEFAULTS = {"vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": None,
            "num_heads": 8, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
            "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6, "feed_forward_proj": "relu",
            "tie_word_embeddings": True, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}
MT5_DEFAULTS = {**DEFAULTS, "vocab_size": 250112, "d_ff": 1024, "num_layers": 8, "num_heads": 6,
                "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}
ACTIVATIONS = {"relu": "relu", "gelu": "gelu_tanh", "gelu_new": "gelu_tanh", "silu": "silu", "swish": "silu"}


def _c(config: dict):
    defaults = MT5_DEFAULTS if config.get("model_type") == "mt5" else DEFAULTS
    return lambda key: config.get(key, defaults.get(key))


def _feed_forward(proj: str) -> tuple[str, bool]:
    """T5's feed_forward_proj ("relu", "gated-gelu" ...) -> (activation, gated)."""
    gated = proj.startswith("gated-")
    act = proj.split("-", 1)[1] if gated else proj
    if act not in ACTIVATIONS:
        raise T2TError(f"config.json: feed_forward_proj {proj!r} is not supported; supported: "
                       f"{', '.join(ACTIVATIONS)} and their gated- forms")
    return ACTIVATIONS[act], gated


def tied_output(config: dict, weights) -> bool:
    """Whether the output layer is the embedding table: transformers 5 writes tie_word_embeddings
    true for every T5 (and scale_decoder_outputs for the original's scaling), so the weights decide:
    an lm_head of its own (Flan-T5, mT5, T5 v1.1) is kept apart unless it equals the table."""
    if "lm_head.weight" not in weights:
        return True
    if not _c(config)("tie_word_embeddings"):
        return False
    shared = next((k for k in ("shared.weight", "decoder.embed_tokens.weight") if k in weights), None)
    return shared is not None and bool((weights["lm_head.weight"] == weights[shared]).all())


def model_options(config: dict, weights) -> dict:
    c = _c(config)
    activation, gated = _feed_forward(c("feed_forward_proj"))
    layers = int(c("num_layers"))
    tied = tied_output(config, weights)
    # the original T5 scales its decoder's output, T5 v1.1, Flan-T5 and mT5 do not (transformers 5 says
    # so in scale_decoder_outputs, 4 by tie_word_embeddings, which mT5's checkpoints set false)
    scale = config.get("model_type") != "mt5" and bool(config.get("scale_decoder_outputs", c("tie_word_embeddings")))
    return {"arch": "transformer", "dim": c("d_model"), "layers": layers, "encoder_layers": layers,
            "decoder_layers": int(c("num_decoder_layers") or layers), "heads": c("num_heads"), "head_dim": c("d_kv"),
            "ff_dim": c("d_ff"), "activation": activation, "ff_gated": gated, "norm": "pre", "norm_type": "rms",
            "norm_eps": float(c("layer_norm_epsilon")), "bias": False, "attention_scale": False,
            "positions": "relative", "relative_buckets": c("relative_attention_num_buckets"),
            "relative_max_distance": c("relative_attention_max_distance"), "max_positions": 4096,
            "embed_scale": False, "tie_output": tied, "output_scale": scale, "share_embeddings": True,
            "dropout": float(c("dropout_rate")), "attention_dropout": float(c("dropout_rate")),
            "activation_dropout": float(c("dropout_rate"))}


def table(config: dict, tied: bool) -> list[mapping.Row]:
    c = _c(config)
    activation, gated = _feed_forward(c("feed_forward_proj"))
    w = ("weight",)
    rows: list[mapping.Row] = [
        ("src_rel.embed.weight", ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",), "any"),
        ("tgt_rel.embed.weight", ("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",), "any")]

    def ff(t2t: str, hf: str) -> list[mapping.Row]:
        if gated:
            return (mapping._same(f"{t2t}.fc1", f"{hf}.wi_0", w) + mapping._same(f"{t2t}.gate", f"{hf}.wi_1", w)
                    + mapping._same(f"{t2t}.fc2", f"{hf}.wo", w))
        return mapping._same(f"{t2t}.fc1", f"{hf}.wi", w) + mapping._same(f"{t2t}.fc2", f"{hf}.wo", w)

    for i in range(int(c("num_layers"))):
        e, t = f"encoder.block.{i}.layer", f"encoder.{i}"
        rows += mapping._fused(f"{t}.attn.qkv", [f"{e}.0.SelfAttention.{p}" for p in "qkv"], w)
        rows += mapping._same(f"{t}.attn.out", f"{e}.0.SelfAttention.o", w)
        rows += mapping._same(f"{t}.norm1", f"{e}.0.layer_norm", w) + ff(f"{t}.ff", f"{e}.1.DenseReluDense")
        rows += mapping._same(f"{t}.norm2", f"{e}.1.layer_norm", w)
    for i in range(int(c("num_decoder_layers") or c("num_layers"))):
        d, t = f"decoder.block.{i}.layer", f"decoder.{i}"
        rows += mapping._fused(f"{t}.self_attn.qkv", [f"{d}.0.SelfAttention.{p}" for p in "qkv"], w)
        rows += mapping._same(f"{t}.self_attn.out", f"{d}.0.SelfAttention.o", w)
        rows += mapping._same(f"{t}.norm1", f"{d}.0.layer_norm", w)
        rows += mapping._same(f"{t}.cross_attn.q", f"{d}.1.EncDecAttention.q", w)
        rows += mapping._fused(f"{t}.cross_attn.kv", [f"{d}.1.EncDecAttention.{p}" for p in "kv"], w)
        rows += mapping._same(f"{t}.cross_attn.out", f"{d}.1.EncDecAttention.o", w)
        rows += mapping._same(f"{t}.norm2", f"{d}.1.layer_norm", w) + ff(f"{t}.ff", f"{d}.2.DenseReluDense")
        rows += mapping._same(f"{t}.norm3", f"{d}.2.layer_norm", w)
    rows += mapping._same("enc_norm", "encoder.final_layer_norm", w) + mapping._same("dec_norm", "decoder.final_layer_norm", w)
    return rows + mapping.embedding_rows(True, tied, "shared.weight", "encoder.embed_tokens.weight",
                                         "decoder.embed_tokens.weight")


def tokenizer_files(folder) -> dict[str, bytes]:
    names = ("tokenizer.json", "spiece.model", "tokenizer_config.json", "special_tokens_map.json", "config.json",
             "generation_config.json")
    files = {n: folder.read_bytes(n, required=False) for n in names}
    if files["tokenizer.json"] is None:
        folder.file("tokenizer.json")            # names the missing file
    return {k: v for k, v in files.items() if v is not None}


def weights_to_t2t(weights, config: dict):
    return mapping.to_t2t(weights, table(config, tied_output(config, weights)),
                          ignored=("EncDecAttention.relative_attention_bias.weight",))


def weights_from_t2t(state: dict, config: dict) -> dict:
    tied = state["out.weight"].data_ptr() == state["tgt_embed.weight"].data_ptr() or \
        torch.equal(state["out.weight"], state["tgt_embed.weight"])
    return mapping.from_t2t(state, table(config, tied))


@dataclasses.dataclass(frozen=True, kw_only=True)
class T5TokenizerOptions(TokenizerOptions):
    source_prefix: str = option("", help="text put before every source, as T5 was trained: e.g. "
                                "'translate English to German: ' or 'summarize: '")


class T5Tokenizer(JsonTokenizer):
    """A T5 folder's tokenizer.json, one side; sources begin with `tokenizer.source_prefix`."""

    name = "t5"
    Options = T5TokenizerOptions
    DEFAULTS = DEFAULTS

    def encode(self, text: str) -> list[int]:
        prefix = getattr(self.options, "source_prefix", "") if self.side == "source" else ""
        return super().encode(prefix + text)


Tokenizer = T5Tokenizer
