"""The vocabulary and special tokens every tokenizer shares."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)


class Vocab:
    """Tokens <-> ids. A vocabulary t2t builds starts with <pad>, <unk>, <s>, </s> (ids 0-3) and user
    symbols follow; one that comes with a pretrained model names its own special ids (`specials`):
    `bos` is the id the decoder starts from (Marian and T5 start from <pad>, BART from </s>)."""

    def __init__(self, tokens: Sequence[str], specials: dict[str, int] | None = None):
        self.tokens = list(tokens)
        if specials is None:
            if tuple(self.tokens[:4]) != SPECIALS:
                raise ValueError(f"a vocabulary starts with {SPECIALS}, got {tuple(self.tokens[:4])}")
            specials = {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
        bad = {k: v for k, v in specials.items() if not 0 <= v < len(self.tokens)}
        if bad or set(specials) != {"pad", "unk", "bos", "eos"}:
            raise ValueError(f"special ids {specials} must name pad, unk, bos and eos within the "
                             f"{len(self.tokens)} tokens")
        self.pad, self.unk, self.bos, self.eos = (int(specials[k]) for k in ("pad", "unk", "bos", "eos"))
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            dup = [t for t, n in Counter(self.tokens).items() if n > 1]
            raise ValueError(f"duplicate tokens in vocabulary: {dup[:5]}")

    @property
    def specials(self) -> dict[str, int]:
        return {"pad": self.pad, "unk": self.unk, "bos": self.bos, "eos": self.eos}

    @classmethod
    def build(cls, counts: Counter, min_freq: int = 1, max_size: int | None = None,
              symbols: Iterable[str] = ()) -> "Vocab":
        """Most frequent tokens first (ties alphabetical, so builds are reproducible)."""
        head = list(SPECIALS) + [s for s in symbols if s not in SPECIALS]
        taken = set(head)
        ranked = sorted((t for t, n in counts.items() if n >= min_freq and t not in taken),
                        key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(head))]
        return cls(head + ranked)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.ids

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens and self.specials == other.specials

    def index(self, token: str) -> int:
        return self.ids.get(token, self.unk)

    def lookup(self, tokens: Iterable[str]) -> list[int]:
        get, unk = self.ids.get, self.unk
        return [get(t, unk) for t in tokens]

    def strip(self, ids: Iterable[int]) -> list[int]:
        """Ids up to the first </s>, without <pad> and <s>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                out.append(i)
        return out

    def state_dict(self) -> dict:
        out = {"tokens": list(self.tokens)}
        if self.specials != {"pad": 0, "unk": 1, "bos": 2, "eos": 3}:
            out["specials"] = self.specials      # only then: the states of t2t's own vocabularies stay as they were
        return out

    @classmethod
    def from_state(cls, state: dict) -> "Vocab":
        return cls(state["tokens"], state.get("specials"))
