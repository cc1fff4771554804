"""Dialogue: multi-turn conversations -> (context, response) examples.

Conversations are read from JSON Lines (a list of turns per line, optional speakers and a
knowledge/persona field), or, with `source: chitchat`, from the `chitchat-dataset` package (the
Chit Chat Challenge conversations shipped in its wheel: `pip install -e .[dialogue]`), split by
conversation id into train/valid/test (90/5/5). Each target turn becomes one example whose source is the previous
`history` turns joined by the separator token `<sep>` (optionally tagged with their speakers), so
splits stay by conversation: a conversation's turns never straddle two splits. `target_speakers`
restricts which turns are targets (e.g. only SYSTEM turns of task-oriented data).

Baseline for `t2t evaluate --baseline retrieval`: the training response whose context is most
similar by TF-IDF cosine (sparse products in torch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections import Counter
from typing import Iterator, Literal, Optional

import torch

import t2t
from t2t.data import read_jsonl
from t2t.errors import DataError
from t2t.options import DataOptions, option

SEP = "<sep>"
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DialogueOptions(DataOptions):
    source: Literal["files", "chitchat"] = option("files", help="files: {split}.jsonl in data.dir; chitchat: the "
                                                               "chitchat-dataset package")
    format: Literal["jsonl"] = option("jsonl", help="one conversation per line")
    turns: str = option("turns", help="field holding the list of turns")
    speakers: Optional[str] = option(None, help="field holding each turn's speaker (a list like the turns)")
    target_speakers: tuple[str, ...] = option((), help="only these speakers' turns are targets (needs `speakers`)")
    history: int = option(3, min=1, help="previous turns in the context")
    tag_speakers: bool = option(False, help="prefix each context turn with its speaker ('USER: ...')")
    knowledge: Optional[str] = option(None, help="field with persona/knowledge text put before the context")
    max_context_words: Optional[int] = option(None, min=1, help="keep only the last N words of the context")
    splits: dict[str, str] = option(factory=dict, help="file stem of each split, e.g. {test: valid}")


class Dialogue(t2t.Task):
    """Conversations -> the next turn given the previous ones."""

    name = "dialogue"
    Options = DialogueOptions
    default_metrics = ("bleu", "distinct_n")
    special_tokens = (SEP,)
    baselines = ("retrieval",)

    def __init__(self, options, data_dir=None, seed=1):
        super().__init__(options, data_dir, seed)
        self._index = None

    def read(self, split: str) -> Iterator[t2t.Example]:
        o = self.options
        if o.source == "chitchat":
            path, rows = "chitchat-dataset", chitchat_rows(split)
        else:
            path = self.path(f"{o.splits.get(split, split)}.{o.format}")
            rows = read_jsonl(path, self.problems)
        for lineno, row in rows:
            turns = row.get(o.turns)
            if not isinstance(turns, list):
                self.problems.report(f"{path}:{lineno}", f"'{o.turns}' must be a list of turns")
                continue
            speakers = row.get(o.speakers) if o.speakers else None
            if o.speakers and (not isinstance(speakers, list) or len(speakers) != len(turns)):
                self.problems.report(f"{path}:{lineno}", f"'{o.speakers}' must list one speaker per turn")
                continue
            conv = str(row.get("id", lineno))
            for i in range(1, len(turns)):
                if o.target_speakers and speakers[i] not in o.target_speakers:
                    continue
                target = " ".join(str(turns[i]).split())
                if not target:
                    continue
                yield t2t.Example(self.context(turns[:i], speakers[:i] if speakers else None, row.get(o.knowledge)
                                               if o.knowledge else None), target, id=f"{conv}:{i}")

    def group(self, example: t2t.Example) -> str:
        return example.id.rpartition(":")[0]            # the conversation: split by conversation, never by turn

    def context(self, turns: list, speakers: list | None, knowledge: str | None) -> str:
        o = self.options
        start = max(0, len(turns) - o.history)
        parts = []
        for j in range(start, len(turns)):
            text = " ".join(str(turns[j]).split())
            parts.append(f"{speakers[j]}: {text}" if o.tag_speakers and speakers else text)
        context = f" {SEP} ".join(parts)
        if o.max_context_words is not None:
            context = " ".join(context.split(" ")[-o.max_context_words:])
        if knowledge:
            context = f"{' '.join(str(knowledge).split())} {SEP} {context}"
        return context

    # ------------------------------------------------------------------ retrieval baseline
    def baseline(self, name: str, examples: list[t2t.Example]) -> list[str]:
        if self._index is None:
            train = self.examples("train")
            self._index = TfidfIndex([ex.source for ex in train], [ex.target for ex in train])
        out = []
        for start in range(0, len(examples), 256):
            out.extend(self._index.nearest([ex.source for ex in examples[start: start + 256]]))
        return out


def chitchat_rows(split: str) -> Iterator[tuple[int, dict]]:
    """Conversations of the chitchat-dataset package as rows {id, turns}; a turn is one sender's
    consecutive messages. Conversations go to a split by a hash of their id (test 5%, valid 5%)."""
    try:
        import chitchat_dataset
    except ImportError:
        raise DataError("data.source chitchat needs the chitchat-dataset package: pip install -e .[dialogue] "
                        "(or pip install chitchat-dataset)") from None
    bucket = {"test": 0, "valid": 1}
    for i, (conv_id, conv) in enumerate(sorted(chitchat_dataset.Dataset().items())):
        b = int(hashlib.md5(conv_id.encode()).hexdigest(), 16) % 20
        if b == bucket.get(split, -1) or (split == "train" and b > 1):
            turns = [" ".join(u["text"] for u in message) for message in conv["messages"]]
            yield i + 1, {"id": conv_id, "turns": turns}


class TfidfIndex:
    """Nearest training context by TF-IDF cosine similarity; returns that context's response."""

    def __init__(self, contexts: list[str], responses: list[str]):
        self.responses = responses
        docs = [Counter(_WORD.findall(c.lower())) for c in contexts]
        df = Counter(w for d in docs for w in d)
        self.words = {w: i for i, w in enumerate(df)}
        n = len(docs)
        self.idf = torch.tensor([math.log((1 + n) / (1 + df[w])) + 1.0 for w in self.words])
        self.matrix = self._vectors(docs)                              # (N, V) sparse, rows unit length

    def _vectors(self, docs: list[Counter]) -> torch.Tensor:
        rows, cols, vals = [], [], []
        for r, d in enumerate(docs):
            for w, c in d.items():
                if w in self.words:
                    rows.append(r)
                    cols.append(self.words[w])
                    vals.append(float(c))
        m = torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.long), torch.tensor(vals),
                                    (len(docs), len(self.words)), check_invariants=True).coalesce()
        idx = m.indices()
        v = m.values() * self.idf[idx[1]]
        norms = torch.zeros(len(docs)).index_add_(0, idx[0], v * v).sqrt().clamp(min=1e-12)
        return torch.sparse_coo_tensor(idx, v / norms[idx[0]], m.shape, check_invariants=True).coalesce()

    def nearest(self, queries: list[str]) -> list[str]:
        q = self._vectors([Counter(_WORD.findall(x.lower())) for x in queries]).to_dense()   # (Q, V)
        scores = torch.sparse.mm(self.matrix, q.t())                                          # (N, Q)
        return [self.responses[int(i)] for i in scores.argmax(dim=0)]


@t2t.hookimpl
def t2t_register_tasks(register):
    register(Dialogue)
