"""Tasks: where examples come from. A task plugin subclasses `Task` and registers it."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

from t2t.data import Problems
from t2t.errors import DataError
from t2t.options import DataOptions
from t2t.paths import resolve_data_path


@dataclass(frozen=True)
class Example:
    """One source -> target pair.

    `source` is text, or a float tensor (frames, features) for tasks whose `source_kind` is
    "features". `references` holds every reference for evaluation (the target among them); when
    empty, the target is the only reference.
    """

    source: Any
    target: str
    references: tuple[str, ...] = ()
    id: str = ""
    raw: Any = None        # the source as read, before the task normalised it (for baselines)

    @property
    def refs(self) -> tuple[str, ...]:
        return self.references or (self.target,)


class Task:
    """A source of examples for each split.

    Subclasses set `name`, optionally `Options` (a `DataOptions` subclass: their keys under
    `data:`), `source_kind`, `default_metrics`, `splits` and `special_tokens`, and implement
    `read(split)`.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[DataOptions]] = DataOptions
    source_kind: ClassVar[str] = "text"          # "text" or "features"
    default_metrics: ClassVar[tuple[str, ...]] = ("bleu", "chrf")
    splits: ClassVar[tuple[str, ...]] = ("train", "valid", "test")
    special_tokens: ClassVar[tuple[str, ...]] = ()   # symbols the tokenizer must keep whole
    baselines: ClassVar[tuple[str, ...]] = ()        # names `baseline()` answers (t2t evaluate --baseline)
    _held: set | None = None          # under valid_from_train: the group keys held out as valid
    data_root: Path | None = None     # --data-dir, where data paths named in the recipe resolve

    def __init__(self, options: DataOptions, data_dir: Path | None = None, seed: int = 1):
        self.options = options
        self.data_dir = data_dir
        self.seed = seed
        self.problems = Problems(options.on_error)

    def read(self, split: str) -> Iterator[Example]:
        """Yield the examples of `split` (one of `self.splits`), in a fixed order."""
        raise NotImplementedError

    def stream(self, split: str) -> Iterator[Example]:
        """`read(split)` checked and limited by the recipe (`train_limit` / `eval_limit`), one
        example at a time: a prepared dataset is built from this without holding the split.
        A task that filters examples by what the recipe asks overrides this (calling super())."""
        if split not in self.splits:
            raise DataError(f"task '{self.name}' has no split '{split}'; its splits: {', '.join(self.splits)}")
        limit = self.options.train_limit if split == "train" else self.options.eval_limit
        held_out = self.options.valid_from_train is not None and split in ("train", "valid")
        n = 0
        for ex in (self._divide_train(split) if held_out else self.read(split)):
            if limit is not None and n >= limit:
                break
            n += 1
            yield ex
        if not n:
            raise DataError(f"task '{self.name}': split '{split}' is empty"
                            f"{f' (read from {self.data_dir})' if self.data_dir else ''}")

    def examples(self, split: str) -> list[Example]:
        """Every example of `stream(split)` in a list (for evaluation splits; training streams)."""
        return list(self.stream(split))

    def _divide_train(self, split: str) -> Iterator[Example]:
        """With `valid_from_train`, train and valid share the training data: `valid_from_train`
        units (examples, or what `group()` joins) drawn with the seed are valid, the rest train.
        Two passes over the training data: the first learns the units (keys only), the second
        yields one side, so the split is never held in memory."""
        if self._held is None:
            n = self.options.valid_from_train
            keys = list(dict.fromkeys(self.group(ex) or i for i, ex in enumerate(self._read_quietly("train"))))
            if n >= len(keys):
                raise DataError(f"data.valid_from_train: {n} would leave no training data (the training "
                                f"split has {len(keys)} {'groups' if keys and isinstance(keys[0], str) else 'examples'})")
            self._held = set(random.Random(f"valid-from-train/{self.seed}").sample(keys, n))
        want_valid = split == "valid"
        # malformed lines are counted on the training side's pass only, so each once
        lines = self._read_quietly("train") if want_valid else self.read("train")
        for i, ex in enumerate(lines):
            if ((self.group(ex) or i) in self._held) == want_valid:
                yield ex

    def _read_quietly(self, split: str) -> Iterator[Example]:
        """`read(split)` with malformed examples skipped or failed as the recipe says, but not counted."""
        with self.uncounted():
            yield from self.read(split)

    @contextlib.contextmanager
    def uncounted(self):
        """Malformed examples met inside are handled by the recipe's policy but not counted (a
        second pass over data whose problems were counted on the first)."""
        counted, self.problems = self.problems, Problems(self.problems.policy)
        try:
            yield
        finally:
            self.problems = counted

    def group(self, example: Example) -> str | None:
        """Examples that must stay on one side of a split (the turns of one conversation) share a
        group; None: the example stands alone."""
        return None

    def path(self, *parts: str) -> Path:
        """A file under the data folder; a clear error when there is no folder or no such file."""
        if self.data_dir is None:
            raise DataError(f"task '{self.name}' needs a data folder: set data.dir in the recipe, "
                            f"or pass --data-dir / set T2T_DATA")
        p = self.data_dir.joinpath(*parts)
        if not p.exists():
            hint = "" if self.data_dir.exists() else \
                f" (the folder {self.data_dir} itself is missing; set --data-dir or T2T_DATA)"
            raise DataError(f"{p}: no such file{hint}")
        return p

    def data_path(self, path: str) -> Path:
        """A data path named in the recipe (an extra manifest, say), resolved like `data.dir`."""
        return resolve_data_path(path, self.data_root)

    def other_data_folders(self) -> list[Path]:
        """Folders outside `data_dir` that the task reads (their files key prepared data too)."""
        return []

    def baseline(self, name: str, examples: list[Example]) -> list[str]:
        """Model-free outputs (e.g. the lead sentences of each document), one per example."""
        raise NotImplementedError

    def prepare_source(self, source: Any) -> Any:
        """A source as a user gives it (e.g. a line of `t2t generate` input) -> model input.

        Text tasks return it unchanged; feature tasks turn it (an audio path, say) into a
        (frames, features) tensor."""
        return source

    def augment(self, src, lengths):
        """Training-time augmentation of a batch's sources (B, S[, F]); evaluation never calls it."""
        return src

    def feature_dim(self) -> int | None:
        """Size of a feature frame for feature tasks; None for text."""
        return None

    def state_dict(self) -> dict:
        """Anything computed from training data that decoding needs (e.g. CMVN statistics)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
