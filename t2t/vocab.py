"""The vocabulary and special tokens every tokenizer shares."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)


class Vocab:
    """Tokens <-> ids. Ids 0-3 are always <pad>, <unk>, <s>, </s>; user symbols follow."""

    pad, unk, bos, eos = 0, 1, 2, 3

    def __init__(self, tokens: Sequence[str]):
        if tuple(tokens[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {tuple(tokens[:4])}")
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            dup = [t for t, n in Counter(self.tokens).items() if n > 1]
            raise ValueError(f"duplicate tokens in vocabulary: {dup[:5]}")

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
        return isinstance(other, Vocab) and self.tokens == other.tokens

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
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_state(cls, state: dict) -> "Vocab":
        return cls(state["tokens"])
