"""The errors t2t raises for problems a user can fix.

`cli.py` prints these as one paragraph without a traceback; anything else is a bug and keeps its
traceback. Messages read `where: what; hint`.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class T2TError(Exception):
    """A problem the user can act on (bad recipe, missing plugin, broken data, ...)."""


class RecipeError(T2TError):
    """The recipe (file or command-line override) is invalid."""


class PluginError(T2TError):
    """A plugin is missing, broken, or clashes with another."""


class DataError(T2TError):
    """Input data is missing or malformed."""


class CheckpointError(T2TError):
    """A checkpoint is missing, truncated, foreign, or incompatible."""


class DecodeOptionError(T2TError):
    """A decoding setting that is not allowed; `key` names it (e.g. "nbest")."""

    def __init__(self, key: str, message: str):
        super().__init__(f"decode.{key}: {message}")
        self.key, self.message = key, message


class DecodeBudgetError(T2TError):
    """A search stopped by its budget (`t2t.search.Budget`); `reason` is "tokens", "time" or "stopped"."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class TrainingError(T2TError):
    """Training cannot go on (e.g. too many non-finite losses)."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice closest to `name`, if any is close enough to suggest."""
    found = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """'; did you mean 'x'?' or '' — a suffix for error messages."""
    best = closest(name, choices)
    return f"; did you mean '{best}'?" if best else ""
