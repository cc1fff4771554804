"""The base of a pretrained family's tokenizer: one side (source or target) of the folder's
tokenizer, its files kept as bytes inside runs and checkpoints so that export writes them back
unchanged, its vocabulary with the folder's special ids, and the folder's generation rules
(`specials`) for search."""

from __future__ import annotations

import json
import re
from typing import ClassVar, Iterable, Sequence

import torch

from t2t.errors import T2TError
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

    def __init__(self, options: TokenizerOptions, symbols: Sequence[str] = ()):
        super().__init__(options, symbols)
        self.files: dict[str, bytes] = {}
        self.side = "target"
        self.special_ids: set[int] = set()           # skipped when decoding, kept whole when encoding

    @classmethod
    def from_files(cls, options: TokenizerOptions, files: dict[str, bytes], side: str) -> "PretrainedTokenizer":
        tok = cls(options)
        tok.files, tok.side = dict(files), side
        tok._build()
        return tok

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
        if vocab is not None and vocab != self.vocab:
            raise T2TError(f"tokenizer {self.name}: its saved vocabulary differs from its files'")

    def generation_config(self) -> dict:
        """The folder's generation settings: generation_config.json, else those config.json holds
        (as transformers reads them)."""
        if "generation_config.json" in self.files:
            return self.json_file("generation_config.json")
        config = self.json_file("config.json")
        return {k: config[k] for k in GENERATION_KEYS if config.get(k) is not None}

    def specials(self) -> Specials:
        """The ids search treats specially, by the folder's generation config."""
        gen = self.generation_config()
        v = self.vocab
        bad = [ids[0] for ids in gen.get("bad_words_ids") or [] if len(ids) == 1]
        forced_eos = gen.get("forced_eos_token_id")
        return Specials(bos=v.bos, eos=v.eos, pad=v.pad, unk=v.unk, banned=tuple(bad),
                        forced_eos=forced_eos is not None)

    # -- helpers for subclasses
    def split_specials(self, text: str) -> list[str | int]:
        """`text` cut around the special tokens written in it: text parts, and special ids."""
        names = {self.vocab.tokens[i]: i for i in self.special_ids}
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
