"""BART: post-norm Transformer with learned positions (their table starts at row 2), a layer norm
over embeddings and positions on each side, GELU, a fixed output bias (`final_logits_bias`),
embeddings shared by encoder, decoder and output; byte-level BPE (`tokenizer.json`, or
`vocab.json` + `merges.txt`) through the `tokenizers` library; the decoder starts from </s> and
outputs begin with <s> (forced where the generation config says so)."""

from __future__ import annotations

from t2t.pretrained import mapping
from t2t.pretrained.tokenizer import JsonTokenizer

MODEL_TYPES = ("bart",)
# transformers' BartConfig defaults: a config.json saved by it leaves out what equals them
DEFAULTS = {"vocab_size": 50265, "max_position_embeddings": 1024, "encoder_layers": 12, "encoder_ffn_dim": 4096,
            "encoder_attention_heads": 16, "decoder_layers": 12, "decoder_ffn_dim": 4096,
            "decoder_attention_heads": 16, "activation_function": "gelu", "d_model": 1024, "dropout": 0.1,
            "attention_dropout": 0.0, "activation_dropout": 0.0, "scale_embedding": False, "pad_token_id": 1,
            "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2, "forced_eos_token_id": 2,
            "tie_word_embeddings": True, "share_encoder_decoder_embeddings": True}
TABLE = dict(learned_positions=True, embed_norm=True)


def _c(config: dict):
    return lambda key: config.get(key, DEFAULTS.get(key))


def model_options(config: dict, weights=None) -> dict:
    """TransformerOptions keys that express this config."""
    return {**mapping.bart_options(_c(config)), "norm": "post", "positions": "learned", "position_offset": 2,
            "embed_norm": True, "output_bias": True}


def tokenizer_files(folder) -> dict[str, bytes]:
    names = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
             "config.json", "generation_config.json")
    files = {n: folder.read_bytes(n, required=False) for n in names}
    if files["tokenizer.json"] is None and (files["vocab.json"] is None or files["merges.txt"] is None):
        folder.file("tokenizer.json")          # names the missing file
    return {k: v for k, v in files.items() if v is not None}


def weights_to_t2t(weights, config: dict):
    return mapping.to_t2t(weights, mapping.bart_table(_c(config), **TABLE))


def weights_from_t2t(state: dict, config: dict) -> dict:
    return mapping.from_t2t(state, mapping.bart_table(_c(config), **TABLE))


class BartTokenizer(JsonTokenizer):
    """A BART folder's byte-level BPE, one side."""

    name = "bart"
    DEFAULTS = DEFAULTS


Tokenizer = BartTokenizer
