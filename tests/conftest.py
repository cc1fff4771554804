import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# CI explores the same examples on every run, so its verdict cannot flip by chance
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from t2t.registry import Registry
from t2t.testing import using_registry

torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED_DATA = Path(os.environ.get("T2T_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def registry():
    """Exactly the built-in plugins, as the process's registry: installed plugins cannot interfere."""
    with using_registry(Registry.from_plugins(builtins=True)) as reg:
        yield reg


@pytest.fixture
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set T2T_SHARED_DATA to run this test)")
    return SHARED_DATA


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def final_parameters(run_dir: Path):
    """(model weights, step) of a run's last checkpoint."""
    from t2t import checkpoint as ckpt
    data = ckpt.load(ckpt.resolve(run_dir, "last"))
    return data["model"], data["train_state"]["step"]


def recipe_file(tmp_path: Path, recipe: dict, name: str = "recipe.yaml") -> Path:
    import yaml
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path
