"""The base of a pretrained family's tokenizer: one side (source or target) of the folder's
tokenizer, its files kept as bytes inside runs and checkpoints so that export writes them back
unchanged, its vocabulary with the folder's special ids, and the folder's generation rules
(`specials`) for search."""

from __future__ import annotations

import copy
import json
import re
from typing import ClassVar, Iterable, Sequence

import tokenizers
import torch
from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors

from t2t.errors import T2TError, did_you_mean
from t2t.options import TokenizerOptions
from t2t.search import Specials
from t2t.tokenizer import Tokenizer
from t2t.vocab import Vocab


GENERATION_KEYS = ("num_beams", "max_length", "max_new_tokens", "min_length", "length_penalty", "early_stopping",
                   "no_repeat_ngram_size", "bad_words_ids", "forced_bos_token_id", "forced_eos_token_id",
                   "decoder_start_token_id", "eos_token_id", "pad_token_id")


class PretrainedTokenizer(Tokenizer):
    """One side of a pretrained folder's tokenizer. Subclasses set `name`, `FILES` (the tokenizer
    files of the family, copied if present) and implement `_build()` (read `self.files`, set
    `self.vocab`), `encode` and `decode`."""

    FILES: ClassVar[tuple[str, ...]] = ()
    # where a language code goes for families that have them: "prefix" ([code] text </s>) or
    # "suffix" (text </s> [code]); the target side's code is also forced as the first output
    LANGUAGE_FORMAT: ClassVar[str] = "prefix"

    def __init__(self, options: TokenizerOptions, symbols: Sequence[str] = ()):
        super().__init__(options, symbols)
        self.files: dict[str, bytes] = {}
        self.side = "target"
        self.special_ids: set[int] = set()           # skipped when decoding, kept whole when encoding
        self.whole_ids: set[int] | None = None       # kept whole when encoding, where these differ
        self.languages: dict[str, int] = {}          # language code -> its token's id (families that have them)
        self.default_lang: dict[str, str] = {}       # side -> the folder's default language
        self.lang: str | None = None                 # this side's language

    @classmethod
    def from_files(cls, options: TokenizerOptions, files: dict[str, bytes], side: str) -> "PretrainedTokenizer":
        tok = cls(options)
        tok.files, tok.side = dict(files), side
        tok._build()
        tok._choose_language()
        return tok

    # -- languages
    def _choose_language(self) -> None:
        if not self.languages:
            return
        asked = getattr(self.options, f"{self.side}_lang", "")
        self.lang = asked or self.default_lang.get(self.side)
        if asked:
            self.language_id(asked, f"tokenizer.{self.side}_lang")

    def language_id(self, code: str, key: str = "decode.target_lang") -> int:
        """The token id of a language code; one message listing the codes where it is unknown."""
        if not self.languages:
            raise T2TError(f"{key}: {code!r}: this model has no language codes")
        if code not in self.languages:
            raise T2TError(f"{key}: unknown language {code!r}{did_you_mean(code, self.languages)}; the model's "
                           f"{len(self.languages)} languages: {', '.join(sorted(self.languages))}")
        return self.languages[code]

    def with_lang(self, code: str, key: str = "decode.source_lang") -> "PretrainedTokenizer":
        """This tokenizer writing another language (`decode.source_lang`)."""
        self.language_id(code, key)
        tok = copy.copy(self)
        tok.lang = code
        return tok

    def wrap(self, ids: list[int]) -> list[int]:
        """Pieces' ids with what the family adds: the language code, and </s> on the source side."""
        eos = [self.vocab.eos] if self.side == "source" else []
        if not self.languages:
            return ids + eos
        if self.lang is None:
            raise T2TError(f"tokenizer.{self.side}_lang: the {self.side}s' language is needed (the model's "
                           f"languages: {', '.join(sorted(self.languages))})")
        code = self.languages[self.lang]
        if self.LANGUAGE_FORMAT == "suffix":      # a source only: t2t ends every target with </s> itself
            return ids + [self.vocab.eos, code]
        return [code] + ids + eos

    def _build(self) -> None:
        raise NotImplementedError

    def json_file(self, name: str) -> dict:
        data = self.files.get(name)
        return json.loads(data.decode("utf-8")) if data else {}

    # -- t2t's Tokenizer interface
    def train(self, texts: Iterable[str]) -> None:
        raise T2TError(f"tokenizer {self.name}: it comes with a pretrained folder and is not trained")

    def tokenize(self, text: str) -> list[str]:
        return [self.vocab.tokens[i] for i in self.encode(text)]

    def extra_state(self) -> dict:
        # bytes as uint8 tensors: checkpoints hold tensors and plain types only
        return {"side": self.side,
                "files": {k: torch.frombuffer(bytearray(v), dtype=torch.uint8) for k, v in self.files.items()}}

    def load_extra_state(self, state: dict) -> None:
        self.side = state["side"]
        self.files = {k: bytes(v.numpy().tobytes()) for k, v in state["files"].items()}
        vocab = self.vocab
        self._build()
        self._choose_language()
        if vocab is not None and vocab != self.vocab:
            raise T2TError(f"tokenizer {self.name}: its saved vocabulary differs from its files'")

    def generation_config(self) -> dict:
        """The folder's generation settings: generation_config.json, else those config.json holds
        (as transformers reads them)."""
        if "generation_config.json" in self.files:
            return self.json_file("generation_config.json")
        config = self.json_file("config.json")
        return {k: config[k] for k in GENERATION_KEYS if config.get(k) is not None}

    def specials(self, target_lang: str = "") -> Specials:
        """The ids search treats specially, by the folder's generation config; for a family with
        language codes, the target language's code is forced first."""
        gen = self.generation_config()
        v = self.vocab
        bad = [ids[0] for ids in gen.get("bad_words_ids") or [] if len(ids) == 1]
        forced_eos = gen.get("forced_eos_token_id")
        forced_bos = gen.get("forced_bos_token_id")
        lang = target_lang or (self.lang if self.side == "target" else None)
        if lang and (self.languages or target_lang):
            forced_bos = self.language_id(lang)
        return Specials(bos=v.bos, eos=v.eos, pad=v.pad, unk=v.unk, banned=tuple(bad),
                        forced_bos=forced_bos, forced_eos=forced_eos is not None)

    # -- helpers for subclasses
    def split_specials(self, text: str) -> list[str | int]:
        """`text` cut around the special tokens written in it: text parts, and special ids."""
        names = {self.vocab.tokens[i]: i for i in (self.special_ids if self.whole_ids is None else self.whole_ids)}
        if not names:
            return [text]
        pattern = "(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + ")"
        return [names.get(p, p) for p in re.split(pattern, text) if p]


def vocab_from_ids(ids: dict[str, int], size: int, specials: dict[str, int], where: str) -> Vocab:
    """A Vocab of `size` entries from a token -> id map (ids the map leaves out get placeholder
    names, as a model's embedding table may be larger than its tokenizer's vocabulary)."""
    tokens: list[str | None] = [None] * size
    for tok, i in ids.items():
        if not 0 <= int(i) < size:
            raise T2TError(f"{where}: token {tok!r} has id {i}, outside the model's {size} embeddings")
        tokens[int(i)] = tok
    return Vocab([t if t is not None else f"<unused_{i}>" for i, t in enumerate(tokens)], specials)


def token_text(value, default: str | None = None) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content", default)
    return value if value is not None else default


def config_ids(config: dict, defaults: dict) -> dict[str, int]:
    """pad, eos and decoder start ids of a model config (with the family's defaults)."""
    get = lambda k: config.get(k, defaults.get(k))        # noqa: E731
    return {"pad": int(get("pad_token_id")), "eos": int(get("eos_token_id")), "bos": int(get("decoder_start_token_id"))}


class JsonTokenizer(PretrainedTokenizer):
    """A folder's `tokenizer.json` through the `tokenizers` library (the tokenizer transformers
    itself runs): its normaliser, pre-tokeniser, model (byte-level BPE for BART, SentencePiece
    models converted for others) and post-processor. The source is encoded as the post-processor
    builds it (e.g. <s> ... </s>); a target is the same without its closing </s>, which t2t adds.
    A folder with only `vocab.json` and `merges.txt` is read as the byte-level BPE transformers
    builds from them."""

    name = "tokenizer_json"
    DEFAULTS: ClassVar[dict] = {}
    LANGUAGES: ClassVar[str] = ""            # a pattern of the special tokens that are language codes
    DEFAULT_SOURCE_LANG: ClassVar[str] = ""

    def _build(self) -> None:
        conf = self.json_file("tokenizer_config.json")
        config = self.json_file("config.json")
        if "tokenizer.json" in self.files:
            self.backend = tokenizers.Tokenizer.from_str(self.files["tokenizer.json"].decode("utf-8"))
        elif "vocab.json" in self.files and "merges.txt" in self.files:
            self.backend = _byte_level_bpe(self.files["vocab.json"], self.files["merges.txt"], conf)
        else:
            raise T2TError("the folder has neither tokenizer.json nor vocab.json with merges.txt")
        ids = self.backend.get_vocab(with_added_tokens=True)
        unk = ids.get(token_text(conf.get("unk_token"), "<unk>"))
        specials = {**config_ids(config, self.DEFAULTS), "unk": unk if unk is not None else 0}
        size = int(config.get("vocab_size", self.DEFAULTS.get("vocab_size", len(ids))))
        self.vocab = vocab_from_ids(ids, max(size, max(ids.values()) + 1), specials, "tokenizer.json")
        self.cleanup = bool(conf.get("clean_up_tokenization_spaces", False))
        if self.LANGUAGES:
            special = {t.content: i for i, t in self.backend.get_added_tokens_decoder().items() if t.special}
            self.languages = {t: i for t, i in special.items() if re.fullmatch(self.LANGUAGES, t)}
            self.default_lang = {"source": conf.get("src_lang") or self.DEFAULT_SOURCE_LANG,
                                 "target": conf.get("tgt_lang")}

    def encode(self, text: str) -> list[int]:
        if self.languages:                        # the code of this side's language, not the saved template's
            return self.wrap(self.backend.encode(text, add_special_tokens=False).ids)
        ids = self.backend.encode(text).ids
        if self.side == "target" and ids and ids[-1] == self.vocab.eos:
            ids = ids[:-1]
        return ids

    def encode_batch(self, texts) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        """Text of `ids`, special tokens skipped (as transformers' decode with skip_special_tokens)."""
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=True)
        return clean_up(text) if self.cleanup else text

    def detokenize(self, pieces: list[str]) -> str:
        return self.decode([self.vocab.index(p) for p in pieces])


def _byte_level_bpe(vocab: bytes, merges: bytes, conf: dict):
    """vocab.json + merges.txt as transformers' RoBERTa/BART tokenizer builds them."""
    table = json.loads(vocab.decode("utf-8"))
    pairs = [tuple(line.split(" ")) for line in merges.decode("utf-8").splitlines()
             if line and not line.startswith("#version")]
    tok = tokenizers.Tokenizer(models.BPE(vocab=table, merges=pairs, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False))
    prefix = bool(conf.get("add_prefix_space", False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix)
    tok.decoder = decoders.ByteLevel()
    bos, eos = token_text(conf.get("bos_token"), "<s>"), token_text(conf.get("eos_token"), "</s>")
    tok.post_processor = processors.RobertaProcessing((eos, table[eos]), (bos, table[bos]),
                                                      add_prefix_space=prefix, trim_offsets=True)
    names = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "sep_token", "cls_token")
    tok.add_special_tokens([AddedToken(t, special=True) for t in
                            dict.fromkeys(token_text(conf.get(n)) for n in names) if t and t in table])
    return tok


def clean_up(text: str) -> str:
    """transformers' clean_up_tokenization."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text
