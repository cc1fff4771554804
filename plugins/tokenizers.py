"""Built-in tokenizers: `char`, `word` (whitespace) and `sentencepiece` (unigram or BPE), and those
of pretrained families (`marian`), which come with a pretrained folder."""

from __future__ import annotations

import dataclasses
import io
import re
from collections import Counter
from typing import Iterable, Literal, Optional

import torch

import t2t
from t2t.dataset import cpu_threads
from t2t.errors import T2TError
from t2t.options import TokenizerOptions, option
from t2t.vocab import Vocab


@dataclasses.dataclass(frozen=True)
class CountedOptions(TokenizerOptions):
    min_freq: int = option(1, min=1, help="drop tokens seen fewer times in training")
    max_size: Optional[int] = option(None, min=5, help="keep at most this many tokens (specials included)")


class _Counted(t2t.Tokenizer):
    """A vocabulary counted from the training texts."""

    Options = CountedOptions

    def train(self, texts: Iterable[str]) -> None:
        counts = Counter()
        for text in texts:
            counts.update(self.tokenize(self.normalize(text)))
        self.vocab = Vocab.build(counts, self.options.min_freq, self.options.max_size, self.symbols)

    def _symbol_split(self, text: str) -> list[str]:
        """Text split so that each user symbol (e.g. a speaker separator) is one part."""
        if not self.symbols:
            return [text]
        pattern = "(" + "|".join(re.escape(s) for s in sorted(self.symbols, key=len, reverse=True)) + ")"
        return [p for p in re.split(pattern, text) if p]


class CharTokenizer(_Counted):
    """One token per character (user symbols kept whole); spaces are tokens too."""

    name = "char"

    def tokenize(self, text: str) -> list[str]:
        out = []
        for part in self._symbol_split(text):
            out.extend([part] if part in self.symbols else list(part))
        return out

    def detokenize(self, pieces: list[str]) -> str:
        return "".join(pieces)


class WordTokenizer(_Counted):
    """Whitespace-separated words; decoding joins with single spaces."""

    name = "word"

    def tokenize(self, text: str) -> list[str]:
        out = []
        for part in self._symbol_split(text):
            out.extend([part] if part in self.symbols else part.split())
        return out

    def detokenize(self, pieces: list[str]) -> str:
        return " ".join(pieces)


@dataclasses.dataclass(frozen=True)
class SentencePieceOptions(TokenizerOptions):
    name: str = "sentencepiece"
    vocab_size: int = option(8000, min=8, help="pieces in the model (a ceiling on small data)")
    model_type: Literal["unigram", "bpe"] = option("unigram", help="segmentation algorithm")
    character_coverage: float = option(1.0, min=0.5, max=1.0, help="share of characters covered (0.9995 for CJK)")
    byte_fallback: bool = option(False, help="spell unknown characters as UTF-8 bytes instead of <unk>")
    normalization: Literal["nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf", "identity"] = option(
        "nmt_nfkc", help="SentencePiece's normalisation rule (recorded in the model)")
    max_sentences: int = option(500_000, min=1000, help="train on a random sample of at most this many sentences "
                                "(SentencePiece's memory grows with it: 2 million took 5.6 GB, 500,000 1.6 GB)")


class SentencePieceTokenizer(t2t.Tokenizer):
    """Subwords from a SentencePiece model trained on the training split, kept inside the run."""

    name = "sentencepiece"
    Options = SentencePieceOptions

    def __init__(self, options, symbols=()):
        super().__init__(options, symbols)
        self.model_bytes: bytes | None = None
        self.sp = None

    def train(self, texts: Iterable[str]) -> None:
        import sentencepiece as spm
        o = self.options
        out = io.BytesIO()
        spm.set_random_generator_seed(1)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=(self.normalize(t) for t in texts), model_writer=out,
                vocab_size=o.vocab_size, model_type=o.model_type, character_coverage=o.character_coverage,
                byte_fallback=o.byte_fallback, normalization_rule_name=o.normalization,
                input_sentence_size=o.max_sentences, shuffle_input_sentence=True, hard_vocab_limit=False,
                pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>", unk_piece="<unk>",
                bos_piece="<s>", eos_piece="</s>", user_defined_symbols=list(self.symbols),
                minloglevel=2, num_threads=2)
        except RuntimeError as e:
            raise T2TError(f"tokenizer sentencepiece: training failed: {e}") from None
        self._load(out.getvalue())

    def _load(self, model: bytes) -> None:
        import sentencepiece as spm
        self.model_bytes = model
        self.sp = spm.SentencePieceProcessor(model_proto=model)
        self.vocab = Vocab([self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())])

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(self.normalize(text), out_type=int)

    def encode_batch(self, texts) -> list[list[int]]:
        # SentencePiece's own threads: the C++ encoder runs without the GIL
        return self.sp.encode([self.normalize(t) for t in texts], out_type=int, num_threads=cpu_threads())

    def decode(self, ids) -> str:
        # a model may put out a lone word marker before a marked piece ("▁", "▁B"), which
        # SentencePiece turns into two spaces (or, last, a trailing one); the text means neither
        return re.sub(" {2,}", " ", self.sp.decode(self.vocab.strip(ids))).strip(" ")

    def tokenize(self, text: str) -> list[str]:
        return self.sp.encode(self.normalize(text), out_type=str)

    def extra_state(self) -> dict:
        # bytes as a uint8 tensor: checkpoints hold tensors and plain types only
        return {"model": torch.frombuffer(bytearray(self.model_bytes), dtype=torch.uint8)}

    def load_extra_state(self, state: dict) -> None:
        self._load(bytes(state["model"].numpy().tobytes()))


@t2t.hookimpl
def t2t_register_tokenizers(register):
    register(CharTokenizer)
    register(WordTokenizer)
    register(SentencePieceTokenizer)
    from t2t.pretrained import all_tokenizers
    for tokenizer in all_tokenizers():
        register(tokenizer)
