import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from t2t.registry import Registry
from t2t.testing import using_registry

# CI explores the same examples on every run, so its verdict cannot flip by chance
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

torch.set_num_threads(min(2, os.cpu_count() or 1))
# prepared data goes to a cache of this test session's own (subprocesses inherit it), not the user's
os.environ["T2T_CACHE"] = tempfile.mkdtemp(prefix="t2t-test-cache-")

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


@pytest.fixture(scope="session")
def toy_transformer(tmp_path_factory):
    """A small Transformer trained on the dates task to about 90% exact match (500 updates, about
    15 s on 2 cores) and scored on its test split, shared by the serving, int8 and export tests: (run directory, test examples)."""
    from t2t.evaluation import evaluate
    from t2t.pipeline import load
    from t2t.recipe import load_recipe
    from t2t.testing import tiny_recipe, using_registry
    from t2t.trainer import train
    run = tmp_path_factory.mktemp("toy") / "dates"
    recipe = tiny_recipe("dates", "transformer", data={"train_size": 4000, "valid_size": 100, "test_size": 200},
                         model={"dim": 64, "ff_dim": 128, "layers": 2, "heads": 4, "dropout": 0.0},
                         train={"max_steps": 500, "max_epochs": 100, "validate_every": 500, "valid_max_sentences": 0,
                                "max_tokens": 2000, "lr": 3e-3, "schedule": "cosine", "warmup": 30},
                         decode={"max_len_a": 0, "max_len_b": 14}, metrics=["exact_match", "bleu"],
                         output_dir=str(run))
    with using_registry(Registry.from_plugins(builtins=True)):
        train(load_recipe(recipe), overwrite=True)
        evaluate(run, split="test", device="cpu")          # the report a model card shows
        examples = load(run, device="cpu").task.examples("test")
    return run, examples
