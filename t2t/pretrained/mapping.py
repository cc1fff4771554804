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


def bart_table(c: Callable, final_norms: bool = False, learned_positions: bool = False,
               embed_norm: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    """(t2t name, the folder's names) for the layers, the final norms of pre-norm families,
    learned position tables and embedding norms; token embeddings and the output are `_embeddings`'."""
    rows = []
    for side, t in (("encoder", "src"), ("decoder", "tgt")):
        if learned_positions:
            rows.append((f"{t}_pos.table", (f"model.{side}.embed_positions.weight",)))
        if embed_norm:
            rows += _same(f"{t}_embed_norm", f"model.{side}.layernorm_embedding")
    for i in range(c("encoder_layers")):
        e, t = f"model.encoder.layers.{i}", f"encoder.{i}"
        rows += [(f"{t}.attn.qkv.{w}", tuple(f"{e}.self_attn.{p}_proj.{w}" for p in "qkv")) for w in ("weight", "bias")]
        rows += _same(f"{t}.attn.out", f"{e}.self_attn.out_proj") + _same(f"{t}.norm1", f"{e}.self_attn_layer_norm")
        rows += _same(f"{t}.ff.fc1", f"{e}.fc1") + _same(f"{t}.ff.fc2", f"{e}.fc2")
        rows += _same(f"{t}.norm2", f"{e}.final_layer_norm")
    for i in range(c("decoder_layers")):
        d, t = f"model.decoder.layers.{i}", f"decoder.{i}"
        rows += [(f"{t}.self_attn.qkv.{w}", tuple(f"{d}.self_attn.{p}_proj.{w}" for p in "qkv")) for w in ("weight", "bias")]
        rows += _same(f"{t}.self_attn.out", f"{d}.self_attn.out_proj") + _same(f"{t}.norm1", f"{d}.self_attn_layer_norm")
        rows += _same(f"{t}.cross_attn.q", f"{d}.encoder_attn.q_proj")
        rows += [(f"{t}.cross_attn.kv.{w}", tuple(f"{d}.encoder_attn.{p}_proj.{w}" for p in "kv")) for w in ("weight", "bias")]
        rows += _same(f"{t}.cross_attn.out", f"{d}.encoder_attn.out_proj")
        rows += _same(f"{t}.norm2", f"{d}.encoder_attn_layer_norm")
        rows += _same(f"{t}.ff.fc1", f"{d}.fc1") + _same(f"{t}.ff.fc2", f"{d}.fc2")
        rows += _same(f"{t}.norm3", f"{d}.final_layer_norm")
    if final_norms:
        rows += _same("enc_norm", "model.encoder.layer_norm") + _same("dec_norm", "model.decoder.layer_norm")
    return rows


def _same(t2t: str, hf: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(f"{t2t}.{w}", (f"{hf}.{w}",)) for w in ("weight", "bias")]


def _embedding_names(c: Callable) -> dict[str, tuple[str, ...]]:
    """t2t embedding/output name -> the folder's names that may hold it (tied copies: any one)."""
    shared = bool(c("share_encoder_decoder_embeddings"))
    tied = bool(c("tie_word_embeddings"))
    src = ("model.shared.weight", "model.encoder.embed_tokens.weight") if shared else ("model.encoder.embed_tokens.weight",)
    tgt = ("model.shared.weight", "model.decoder.embed_tokens.weight", "model.encoder.embed_tokens.weight") \
        if shared else ("model.decoder.embed_tokens.weight",)
    names = {"src_embed.embed.weight": src + (("lm_head.weight",) if shared and tied else ()),
             "tgt_embed.weight": tgt + (("lm_head.weight",) if tied else ())}
    names["out.weight"] = names["tgt_embed.weight"] if tied else ("lm_head.weight",)
    return names


def to_t2t(weights, table, c: Callable, ignored: tuple[str, ...] = ()):
    """(t2t name, tensor) of the folder's weights (a mapping read one tensor at a time), each
    read when the iteration reaches it; missing or unexpected names (but those ending in
    `ignored`) are listed first."""
    plan, used, missing = [], set(), []
    for name, sources in table:
        absent = [s for s in sources if s not in weights]
        if absent:
            missing += absent
            continue
        plan.append((name, sources))
        used.update(sources)
    for name, choices in _embedding_names(c).items():
        found = next((s for s in choices if s in weights), None)
        if found is None:
            missing.append(" or ".join(choices))
            continue
        plan.append((name, (found,)))
        used.update(s for s in choices if s in weights)
    if "final_logits_bias" in weights:
        plan.append(("logit_bias", ("final_logits_bias",)))
        used.add("final_logits_bias")
    unexpected = sorted(k for k in weights.keys() if k not in used and not (ignored and k.endswith(ignored)))
    if missing or unexpected:
        parts = ([f"missing {len(missing)}: {', '.join(missing[:6])}"] if missing else []) + \
                ([f"unexpected {len(unexpected)}: {', '.join(unexpected[:6])}"] if unexpected else [])
        raise CheckpointError(f"the weights do not fit the config ({'; '.join(parts)})")
    for name, sources in plan:
        tensor = torch.cat([weights[s] for s in sources]) if len(sources) > 1 else weights[sources[0]]
        yield name, tensor.reshape(-1) if name == "logit_bias" else tensor


def from_t2t(state: dict[str, torch.Tensor], table, c: Callable) -> dict[str, torch.Tensor]:
    """t2t's weights under the folder's names, as transformers saves them (tied copies once)."""
    out = {}
    for name, targets in table:
        parts = state[name].split(state[name].shape[0] // len(targets)) if len(targets) > 1 else [state[name]]
        out.update(zip(targets, parts))
    shared, tied = bool(c("share_encoder_decoder_embeddings")), bool(c("tie_word_embeddings"))
    if shared:
        out["model.shared.weight"] = state["tgt_embed.weight"]
    else:
        out["model.encoder.embed_tokens.weight"] = state["src_embed.embed.weight"]
        out["model.decoder.embed_tokens.weight"] = state["tgt_embed.weight"]
    if not tied:
        out["lm_head.weight"] = state["out.weight"]
    if "logit_bias" in state:
        out["final_logits_bias"] = state["logit_bias"].reshape(1, -1)
    return {k: v.detach().clone().contiguous() for k, v in out.items()}
