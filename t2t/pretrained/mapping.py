"""Weight names between t2t's Transformer and the BART lineage of transformers' models (Marian,
BART, mBART, M2M100/NLLB share their layer names): a table of t2t name -> the folder's names,
concatenated along the first dimension where t2t fuses projections (q, k, v -> qkv)."""

from __future__ import annotations

from typing import Callable

import torch

from t2t.errors import CheckpointError, T2TError

ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "swish": "silu", "silu": "silu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}
SINUSOIDS = ("embed_positions.weight",)     # sinusoid tables: computed, not read


def bart_options(c: Callable) -> dict:
    """TransformerOptions keys common to the lineage; `c(key)` reads the config with its defaults."""
    for side in ("attention_heads", "ffn_dim"):
        if c(f"encoder_{side}") != c(f"decoder_{side}"):
            raise T2TError(f"config.json: encoder_{side} {c(f'encoder_{side}')} and decoder_{side} "
                           f"{c(f'decoder_{side}')} differ, which t2t's Transformer does not express")
    act = c("activation_function")
    if act not in ACTIVATIONS:
        raise T2TError(f"config.json: activation_function {act!r} is not supported; supported: "
                       f"{', '.join(ACTIVATIONS)}")
    return {"arch": "transformer", "dim": c("d_model"), "layers": c("encoder_layers"),
            "encoder_layers": c("encoder_layers"), "decoder_layers": c("decoder_layers"),
            "heads": c("encoder_attention_heads"), "ff_dim": c("encoder_ffn_dim"), "activation": ACTIVATIONS[act],
            "max_positions": c("max_position_embeddings"), "embed_scale": bool(c("scale_embedding")),
            "tie_output": bool(c("tie_word_embeddings")),
            "share_embeddings": bool(c("share_encoder_decoder_embeddings")),
            "dropout": float(c("dropout")), "attention_dropout": float(c("attention_dropout")),
            "activation_dropout": float(c("activation_dropout"))}


Row = tuple[str, tuple[str, ...], str]
# A row: (t2t name, the folder's names, how): "cat" concatenates the folder's tensors along the first
# dimension (t2t fuses projections: q, k, v -> qkv) and splits them back; "any" reads whichever of
# the names the folder has (tied copies are saved once) and writes the first; "read" reads like "any"
# but is never written (a weight tied to another row's); "bias" is Marian/BART's (1, V) output bias.


def bart_table(c: Callable, final_norms: bool = False, learned_positions: bool = False,
               embed_norm: bool = False) -> list[Row]:
    """Rows of the BART lineage (Marian, BART, M2M100/NLLB): layers, the final norms of pre-norm
    families, learned position tables, embedding norms, embeddings and the output."""
    rows: list[Row] = []
    for side, t in (("encoder", "src"), ("decoder", "tgt")):
        if learned_positions:
            rows.append((f"{t}_pos.table", (f"model.{side}.embed_positions.weight",), "any"))
        if embed_norm:
            rows += _same(f"{t}_embed_norm", f"model.{side}.layernorm_embedding")
    rows += bart_layers(c)
    if final_norms:
        rows += _same("enc_norm", "model.encoder.layer_norm") + _same("dec_norm", "model.decoder.layer_norm")
    rows += embedding_rows(bool(c("share_encoder_decoder_embeddings")), bool(c("tie_word_embeddings")),
                           "model.shared.weight", "model.encoder.embed_tokens.weight",
                           "model.decoder.embed_tokens.weight")
    rows.append(("logit_bias", ("final_logits_bias",), "bias"))
    return rows


def bart_layers(c: Callable) -> list[Row]:
    """The encoder and decoder layers of the BART lineage (Whisper's too)."""
    rows: list[Row] = []
    for i in range(c("encoder_layers")):
        e, t = f"model.encoder.layers.{i}", f"encoder.{i}"
        rows += _fused(f"{t}.attn.qkv", [f"{e}.self_attn.{p}_proj" for p in "qkv"])
        rows += _same(f"{t}.attn.out", f"{e}.self_attn.out_proj") + _same(f"{t}.norm1", f"{e}.self_attn_layer_norm")
        rows += _same(f"{t}.ff.fc1", f"{e}.fc1") + _same(f"{t}.ff.fc2", f"{e}.fc2")
        rows += _same(f"{t}.norm2", f"{e}.final_layer_norm")
    for i in range(c("decoder_layers")):
        d, t = f"model.decoder.layers.{i}", f"decoder.{i}"
        rows += _fused(f"{t}.self_attn.qkv", [f"{d}.self_attn.{p}_proj" for p in "qkv"])
        rows += _same(f"{t}.self_attn.out", f"{d}.self_attn.out_proj") + _same(f"{t}.norm1", f"{d}.self_attn_layer_norm")
        rows += _same(f"{t}.cross_attn.q", f"{d}.encoder_attn.q_proj")
        rows += _fused(f"{t}.cross_attn.kv", [f"{d}.encoder_attn.{p}_proj" for p in "kv"])
        rows += _same(f"{t}.cross_attn.out", f"{d}.encoder_attn.out_proj")
        rows += _same(f"{t}.norm2", f"{d}.encoder_attn_layer_norm")
        rows += _same(f"{t}.ff.fc1", f"{d}.fc1") + _same(f"{t}.ff.fc2", f"{d}.fc2")
        rows += _same(f"{t}.norm3", f"{d}.final_layer_norm")
    return rows


def _same(t2t: str, hf: str, parts: tuple[str, ...] = ("weight", "bias")) -> list[Row]:
    return [(f"{t2t}.{w}", (f"{hf}.{w}",), "any") for w in parts]


def _fused(t2t: str, hf: list[str], parts: tuple[str, ...] = ("weight", "bias")) -> list[Row]:
    return [(f"{t2t}.{w}", tuple(f"{h}.{w}" for h in hf), "cat") for w in parts]


def embedding_rows(shared: bool, tied: bool, shared_name: str, encoder_name: str, decoder_name: str) -> list[Row]:
    """Token embeddings and the output layer: one shared table where the model shares it (saved once
    as `shared_name`), the output tied to the target table or its own `lm_head`."""
    if shared:
        rows = [("src_embed.embed.weight", (shared_name, encoder_name, decoder_name), "any"),
                ("tgt_embed.weight", (shared_name, decoder_name, encoder_name), "read")]
    else:
        rows = [("src_embed.embed.weight", (encoder_name,), "any"), ("tgt_embed.weight", (decoder_name,), "any")]
    target = rows[1][1]
    rows.append(("out.weight", target + ("lm_head.weight",), "read") if tied else
                ("out.weight", ("lm_head.weight",), "any"))
    return rows


def to_t2t(weights, table: list[Row], ignored: tuple[str, ...] = ()):
    """(t2t name, tensor) of the folder's weights (a mapping read one tensor at a time), each
    read when the iteration reaches it; missing or unexpected names (but those ending in
    `ignored`) are listed first. An optional row ("bias") may be absent."""
    plan, used, missing = [], set(), []
    for name, sources, how in table:
        present = [s for s in sources if s in weights]
        if how == "cat" and len(present) < len(sources):
            missing += [s for s in sources if s not in weights]
        elif how in ("any", "read") and not present:
            missing.append(" or ".join(sources))
        elif present:
            plan.append((name, tuple(present) if how == "cat" else (present[0],), how))
            used.update(present)
    unexpected = sorted(k for k in weights.keys() if k not in used and not (ignored and k.endswith(ignored)))
    if missing or unexpected:
        parts = ([f"missing {len(missing)}: {', '.join(missing[:6])}"] if missing else []) + \
                ([f"unexpected {len(unexpected)}: {', '.join(unexpected[:6])}"] if unexpected else [])
        raise CheckpointError(f"the weights do not fit the config ({'; '.join(parts)})")
    for name, sources, how in plan:
        tensor = torch.cat([weights[s] for s in sources]) if len(sources) > 1 else weights[sources[0]]
        yield name, tensor.reshape(-1) if how == "bias" else tensor


def from_t2t(state: dict[str, torch.Tensor], table: list[Row]) -> dict[str, torch.Tensor]:
    """t2t's weights under the folder's names, as transformers saves them (tied copies once)."""
    out = {}
    for name, targets, how in table:
        if how == "read" or name not in state:
            continue
        tensor = state[name]
        if how == "cat":
            out.update(zip(targets, tensor.split(tensor.shape[0] // len(targets))))
        else:
            out[targets[0]] = tensor.reshape(1, -1) if how == "bias" else tensor
    return {k: v.detach().clone().contiguous() for k, v in out.items()}
