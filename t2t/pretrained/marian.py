"""Marian (opus-mt) models: post-norm Transformer, Marian's sinusoidal positions (sines, then
cosines), scaled embeddings shared by encoder, decoder and output, a fixed output bias
(`final_logits_bias`), swish feed-forward; SentencePiece models for each side (`source.spm`,
`target.spm`) with the ids of `vocab.json`; the decoder starts from <pad>; </s> ends the source."""

from __future__ import annotations


import sentencepiece as spm

from t2t.errors import T2TError
from t2t.pretrained import mapping
from t2t.pretrained.tokenizer import PretrainedTokenizer, clean_up, token_text, vocab_from_ids

MODEL_TYPES = ("marian",)
# transformers' MarianConfig defaults: a config.json saved by it leaves out what equals them
DEFAULTS = {"vocab_size": 58101, "max_position_embeddings": 1024, "encoder_layers": 12, "encoder_ffn_dim": 4096,
            "encoder_attention_heads": 16, "decoder_layers": 12, "decoder_ffn_dim": 4096,
            "decoder_attention_heads": 16, "activation_function": "gelu", "d_model": 1024, "dropout": 0.1,
            "attention_dropout": 0.0, "activation_dropout": 0.0, "decoder_start_token_id": 58100,
            "scale_embedding": False, "pad_token_id": 58100, "eos_token_id": 0, "forced_eos_token_id": 0,
            "share_encoder_decoder_embeddings": True, "tie_word_embeddings": True}


def config_value(config: dict, key: str):
    return config.get(key, DEFAULTS.get(key))


def model_options(config: dict, weights=None) -> dict:
    """TransformerOptions keys that express this config."""
    c = lambda k: config_value(config, k)        # noqa: E731
    return {**mapping.bart_options(c), "norm": "post", "positions": "sinusoidal_halves", "output_bias": True}


def tokenizer_files(folder) -> dict[str, bytes]:
    names = ("source.spm", "target.spm", "vocab.json", "target_vocab.json", "tokenizer_config.json",
             "special_tokens_map.json", "config.json", "generation_config.json")
    files = {n: folder.read_bytes(n, required=n in ("source.spm", "target.spm", "vocab.json")) for n in names}
    return {k: v for k, v in files.items() if v is not None}


def weights_to_t2t(weights, config: dict):
    c = lambda k: config_value(config, k)        # noqa: E731
    return mapping.to_t2t(weights, mapping.bart_table(c), ignored=mapping.SINUSOIDS)


def weights_from_t2t(state: dict, config: dict) -> dict:
    c = lambda k: config_value(config, k)        # noqa: E731
    return mapping.from_t2t(state, mapping.bart_table(c))


class MarianTokenizer(PretrainedTokenizer):
    """A Marian folder's tokenizer, one side: SentencePiece pieces looked up in `vocab.json`
    (`target_vocab.json` for the target side where the vocabularies are separate); the source
    ends with </s>; a leading language code `>>xx<<` is kept whole."""

    name = "marian"

    def _build(self) -> None:
        conf = self.json_file("tokenizer_config.json")
        config = self.json_file("config.json")
        self.separate = bool(conf.get("separate_vocabs", False))
        target = self.side == "target"
        ids = self.json_file("target_vocab.json" if target and self.separate else "vocab.json")
        if not ids:
            raise T2TError(f"tokenizer marian: no {'target_vocab.json' if target and self.separate else 'vocab.json'}")
        size = int(config_value(config, "decoder_vocab_size") or config_value(config, "vocab_size")) \
            if target else int(config_value(config, "vocab_size"))
        unk = ids.get(token_text(conf.get("unk_token"), "<unk>"))
        if unk is None:
            raise T2TError("tokenizer marian: vocab.json has no <unk>")
        pad, eos = int(config_value(config, "pad_token_id")), int(config_value(config, "eos_token_id"))
        start = int(config_value(config, "decoder_start_token_id"))
        self.vocab = vocab_from_ids(ids, max(size, len(ids)), {"pad": pad, "unk": unk, "bos": start, "eos": eos},
                                    "vocab.json")
        self.ids = ids
        self.spm = spm.SentencePieceProcessor(model_proto=self.files["target.spm" if target else "source.spm"])
        # transformers decodes with the source model unless the vocabularies are separate
        self.spm_decode = self.spm if self.separate else spm.SentencePieceProcessor(
            model_proto=self.files["source.spm"])
        extra = [token_text(t) for t in conf.get("additional_special_tokens") or []]
        self.special_ids = {pad, unk, eos} | {ids[t] for t in extra if t in ids}
        self.cleanup = bool(conf.get("clean_up_tokenization_spaces", False))

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for part in self.split_specials(text):
            if isinstance(part, int):
                out.append(part)
                continue
            code = []
            if part.startswith(">>") and (end := part.find("<<")) != -1:    # a target-language code
                code, part = [part[: end + 2]], part[end + 2:]
            out.extend(self.ids.get(p, self.vocab.unk) for p in code + self.spm.encode(part, out_type=str))
        return out + [self.vocab.eos] if self.side == "source" else out

    def encode_batch(self, texts) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        """Text of `ids`, special tokens skipped (as transformers' decode with skip_special_tokens)."""
        pieces = [self.vocab.tokens[int(i)] for i in ids if int(i) not in self.special_ids]
        text = self.spm_decode.decode_pieces(pieces).replace("\u2581", " ").strip()
        return clean_up(text) if self.cleanup else text

    def detokenize(self, pieces: list[str]) -> str:
        return self.spm_decode.decode_pieces(pieces).replace("\u2581", " ").strip()


Tokenizer = MarianTokenizer
