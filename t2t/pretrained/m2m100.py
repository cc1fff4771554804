"""M2M100 and NLLB (`model_type: m2m_100`): pre-norm Transformer with a final layer norm on each
side, fairseq's sinusoidal positions (sines then cosines, read from row padding id + 1), scaled
embeddings shared by encoder, decoder and output, ReLU; no output bias. The tokenizer puts the
language's code first and </s> last on the source (`[__de__] text </s>` for M2M100, `[deu_Latn]
text </s>` for NLLB); the decoder starts from </s> and the target language's code is forced
first. M2M100 folders hold `sentencepiece.bpe.model` + `vocab.json` (language codes are added
after the vocabulary); NLLB folders a `tokenizer.json`."""

from __future__ import annotations

import re

import sentencepiece as spm

from t2t.errors import T2TError
from t2t.options import LanguageTokenizerOptions
from t2t.pretrained import mapping
from t2t.pretrained.tokenizer import JsonTokenizer, PretrainedTokenizer, config_ids, token_text, vocab_from_ids

MODEL_TYPES = ("m2m_100",)
# transformers' M2M100Config defaults: a config.json saved by it leaves out what equals them
DEFAULTS = {"vocab_size": 128112, "max_position_embeddings": 1024, "encoder_layers": 12, "encoder_ffn_dim": 4096,
            "encoder_attention_heads": 16, "decoder_layers": 12, "decoder_ffn_dim": 4096,
            "decoder_attention_heads": 16, "activation_function": "relu", "d_model": 1024, "dropout": 0.1,
            "attention_dropout": 0.1, "activation_dropout": 0.0, "decoder_start_token_id": 2,
            "scale_embedding": True, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
            "tie_word_embeddings": True, "share_encoder_decoder_embeddings": True}
IGNORED = ("embed_positions.weights", "embed_positions._float_tensor")     # sinusoid tables of older saves


def _c(config: dict):
    return lambda key: config.get(key, DEFAULTS.get(key))


def model_options(config: dict, weights=None) -> dict:
    c = _c(config)
    return {**mapping.bart_options(c), "norm": "pre", "positions": "sinusoidal_fairseq",
            "position_offset": int(c("pad_token_id")) + 1, "output_bias": False}


def tokenizer_files(folder) -> dict[str, bytes]:
    names = ("tokenizer.json", "sentencepiece.bpe.model", "vocab.json", "tokenizer_config.json",
             "special_tokens_map.json", "config.json", "generation_config.json")
    files = {n: folder.read_bytes(n, required=False) for n in names}
    if files["tokenizer.json"] is None:
        for name in ("sentencepiece.bpe.model", "vocab.json"):
            if files[name] is None:
                folder.file(name)                    # names the missing file
    return {k: v for k, v in files.items() if v is not None}


def tokenizer_class(files: dict[str, bytes]) -> type:
    return NllbTokenizer if "tokenizer.json" in files else M2M100Tokenizer


def weights_to_t2t(weights, config: dict):
    c = _c(config)
    return mapping.to_t2t(weights, mapping.bart_table(c, final_norms=True), ignored=IGNORED)


def weights_from_t2t(state: dict, config: dict) -> dict:
    c = _c(config)
    return mapping.from_t2t(state, mapping.bart_table(c, final_norms=True))


class M2M100Tokenizer(PretrainedTokenizer):
    """An M2M100 folder's tokenizer, one side: SentencePiece pieces looked up in `vocab.json`, the
    language codes `__xx__` numbered after it (as tokenizer_config.json lists them)."""

    name = "m2m100"
    Options = LanguageTokenizerOptions

    def _build(self) -> None:
        conf = self.json_file("tokenizer_config.json")
        config = self.json_file("config.json")
        ids = self.json_file("vocab.json")
        self.ids = dict(ids)
        codes = _language_tokens(conf, self.json_file("special_tokens_map.json"), len(ids))
        if not codes:
            raise T2TError(f"tokenizer_config.json: language_codes {conf.get('language_codes')!r} is not a known set "
                           f"({', '.join(LANGUAGE_SETS)}) and no __xx__ codes are listed")
        ids.update(codes)
        self.languages = {t[2:-2]: i for t, i in codes.items()}
        self.default_lang = {"source": conf.get("src_lang") or "en", "target": conf.get("tgt_lang")}
        unk = ids.get(token_text(conf.get("unk_token"), "<unk>"), 3)
        size = int(config.get("vocab_size", DEFAULTS["vocab_size"]))
        self.vocab = vocab_from_ids(ids, max(size, max(ids.values()) + 1), {**config_ids(config, DEFAULTS), "unk": unk},
                                    "vocab.json")
        self.spm = spm.SentencePieceProcessor(model_proto=self.files["sentencepiece.bpe.model"])
        bos = ids.get(token_text(conf.get("bos_token"), "<s>"))
        self.whole_ids = {self.vocab.pad, self.vocab.eos, unk, *([bos] if bos is not None else [])}
        # language codes written in a text are pieces like any other, as transformers reads them; when
        # decoding they are skipped (transformers 5 leaves the forced code in the text, 4 did not)
        self.special_ids = self.whole_ids | set(codes.values())

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for part in self.split_specials(text):
            out.extend([part] if isinstance(part, int) else
                       [self.ids.get(p, self.vocab.unk) for p in self.spm.encode(part, out_type=str)])
        return self.wrap(out)

    def encode_batch(self, texts) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        """Text of `ids`, special tokens skipped (as transformers' decode with skip_special_tokens)."""
        return self.spm.decode([self.vocab.tokens[int(i)] for i in ids if int(i) not in self.special_ids]).strip()

    def detokenize(self, pieces: list[str]) -> str:
        return self.spm.decode(pieces).strip()


class NllbTokenizer(JsonTokenizer):
    """An NLLB folder's tokenizer (tokenizer.json), one side; its language codes (eng_Latn ...)
    are among its special tokens."""

    name = "nllb"
    Options = LanguageTokenizerOptions
    DEFAULTS = DEFAULTS
    LANGUAGES = r"[a-z]{3}_[A-Z][a-z]{3}"
    DEFAULT_SOURCE_LANG = "eng_Latn"

    def _build(self) -> None:
        super()._build()
        if self.json_file("tokenizer_config.json").get("legacy_behaviour"):
            self.LANGUAGE_FORMAT = "suffix"              # text </s> [code]: NLLB's first tokenizers


# The languages of the released M2M-100 models, in the order their dictionary numbers them after the
# vocabulary (a folder's tokenizer_config.json names the set by `language_codes`)
LANGUAGE_SETS = {
    "m2m100": ("af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha he hi "
               "hr ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my ne nl no ns "
               "oc or pa pl ps pt ro ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz vi wo xh yi yo zh "
               "zu").split(),
    "wmt21": "en ha is ja cs ru zh de".split(),
}


def _language_tokens(conf: dict, special_map: dict, first: int) -> dict[str, int]:
    """__xx__ tokens and their ids: as `added_tokens_decoder` numbers them where it lists them,
    else numbered after the vocabulary in the order `additional_special_tokens` (or the set
    `language_codes` names) gives."""
    code = re.compile(r"__[A-Za-z_-]+__")
    added = {token_text(v): int(k) for k, v in (conf.get("added_tokens_decoder") or {}).items()}
    numbered = {t: i for t, i in added.items() if t and code.fullmatch(t)}
    if numbered:
        return numbered
    listed = [token_text(t) for t in conf.get("additional_special_tokens") or special_map.get(
        "additional_special_tokens") or []]
    codes = [t for t in listed if t and code.fullmatch(t)]
    if not codes:
        codes = [f"__{c}__" for c in LANGUAGE_SETS.get(conf.get("language_codes", "m2m100"), [])]
    return {t: first + i for i, t in enumerate(codes)}


Tokenizer = M2M100Tokenizer
TOKENIZERS = (M2M100Tokenizer, NllbTokenizer)
