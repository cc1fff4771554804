"""Tokenizers: text <-> ids over a shared `Vocab`. A tokenizer plugin subclasses `Tokenizer`."""

from __future__ import annotations

import unicodedata
from typing import ClassVar, Iterable, Sequence

from t2t.errors import T2TError
from t2t.options import TokenizerOptions
from t2t.vocab import Vocab


class Tokenizer:
    """Turns text into ids and back.

    Subclasses set `name` and `Options`, and implement `train`, `tokenize` (text -> pieces) and
    `detokenize` (pieces -> text), or override `encode`/`decode` directly. `normalize` is the
    recorded normalisation (NFC, optional lower-casing) applied before tokenizing; references
    are scored as given, so an unusual normalisation shows up in the scores instead of hiding.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[TokenizerOptions]] = TokenizerOptions

    def __init__(self, options: TokenizerOptions, symbols: Sequence[str] = ()):
        self.options = options
        self.symbols = tuple(symbols)       # kept whole, e.g. a dialogue task's speaker separator
        self.vocab: Vocab | None = None

    # -- what subclasses provide
    def train(self, texts: Iterable[str]) -> None:
        """Build the vocabulary (and any model) from training texts."""
        raise NotImplementedError

    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def detokenize(self, pieces: list[str]) -> str:
        raise NotImplementedError

    def languages_to_detect(self, target_lang: str = "") -> dict[str, int]:
        """Where decoding must find the target's language itself (a Whisper model with languages
        and none named): the language codes and their token ids; else nothing."""
        return {}

    def extra_state(self) -> dict:
        """Plain data (or tensors) beyond the vocabulary needed to rebuild this tokenizer."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def specials(self, target_lang: str = ""):
        """The ids search treats specially (a `t2t.search.Specials`), for a tokenizer that brings
        its own generation rules (a pretrained folder's); None: t2t's, from the vocabulary."""
        if target_lang:
            raise T2TError(f"decode.target_lang: {target_lang!r}: this model has no language codes")
        return None

    def with_lang(self, code: str) -> "Tokenizer":
        """This tokenizer writing another language (`decode.source_lang`), where it has languages."""
        raise T2TError(f"decode.source_lang: {code!r}: this model has no language codes")

    # -- shared behaviour
    def normalize(self, text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        return text.lower() if self.options.lowercase else text

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, without <s>/</s>."""
        return self.vocab.lookup(self.tokenize(self.normalize(text)))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text; a tokenizer with a threaded encoder overrides this (preparing a
        corpus encodes it in chunks through here)."""
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, stopping at </s> and skipping <pad>/<s>."""
        return self.detokenize([self.vocab.tokens[i] for i in self.vocab.strip(ids)])

    def state_dict(self) -> dict:
        return {"name": self.name, "symbols": list(self.symbols), "vocab": self.vocab.state_dict(),
                "extra": self.extra_state()}

    @classmethod
    def from_state(cls, options: TokenizerOptions, state: dict) -> "Tokenizer":
        tok = cls(options, state.get("symbols", ()))
        tok.vocab = Vocab.from_state(state["vocab"])
        tok.load_extra_state(state.get("extra", {}))
        return tok
