"""The example plugin's own tests, run by CI after `pip install -e examples/t2t-textnorm`."""

from pathlib import Path

import t2t
from t2t.testing import check_task, tiny_run
from t2t_textnorm import ordinal, spell

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "textnorm.yaml"


def test_spelling():
    assert spell(4521) == "four thousand five hundred twenty one"
    assert spell(90010) == "ninety thousand ten"
    assert ordinal(21) == "twenty first" and ordinal(12) == "twelfth" and ordinal(40) == "fortieth"


def test_installed_through_its_entry_point(t2t_registry):
    entry = t2t_registry.entries("tasks")["textnorm"]
    assert entry.package == "t2t-textnorm"
    assert t2t_registry.get("metrics", "ser").higher_is_better is False


def test_every_split_is_well_formed(t2t_registry):
    assert check_task("textnorm", {"train_size": 50, "eval_size": 10}) == {"train": 50, "valid": 10, "test": 10}


def test_metric():
    ser = t2t.get_registry().get("metrics", "ser")()
    assert ser.compute(["a b", "c"], [["a b"], ["d"]]).value == 50.0


def test_recipe_runs_end_to_end(t2t_registry, tmp_path):
    result = tiny_run(RECIPE, tmp_path, ["data.train_size=300", "data.eval_size=20"], steps=20)
    assert set(result["report"]["metrics"]) == {"ser", "wer"}
    assert len(result["outputs"]) == 3
