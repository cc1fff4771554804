"""Where a recipe's data paths point: `data.dir` and a task's other data files, absolute as given
or under --data-dir / $T2T_DATA."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from t2t.recipe import Recipe


def resolve_data_dir(recipe: Recipe, data_dir: str | os.PathLike | None = None) -> Path | None:
    """Where the task reads from: `data.dir` under --data-dir / $T2T_DATA, or as given."""
    d = recipe.data.dir
    if d is None:
        return Path(data_dir) if data_dir else None
    return resolve_data_path(d, data_dir)


def resolve_data_path(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """A data path a recipe names (`data.dir`, a task's extra manifests): absolute as given, else under
    --data-dir / $T2T_DATA (or the working directory when neither is set)."""
    path = Path(os.path.expanduser(path))
    if path.is_absolute():
        return path
    base = data_dir or os.environ.get("T2T_DATA")
    return Path(base) / path if base else path
