"""The benchmark scripts' own logic (their long runs are not tests)."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_crossfold_folds_cover_every_example_once():
    folds = load("crossfold").folds_of(7, 3)
    assert folds == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(i for f in folds for i in f) == list(range(7))


def test_crossfold_chooses_each_fold_on_the_others_only():
    choose = load("crossfold").choose
    # "a" is best on fold 0 alone, "b" on fold 1 alone: each fold must get the other fold's winner
    scores = {"a": [30.0, 10.0], "b": [20.0, 12.0]}
    assert choose(scores, 0, higher_is_better=True) == "b"
    assert choose(scores, 1, higher_is_better=True) == "a"
    assert choose(scores, 0, higher_is_better=False) == "a"       # e.g. WER: lower wins
    # three folds: fold 2's choice sums folds 0 and 1 (a: 40, b: 32), whatever fold 2 says
    scores = {"a": [30.0, 10.0, 0.0], "b": [20.0, 12.0, 99.0]}
    assert choose(scores, 2, higher_is_better=True) == "a"


def test_crossfold_criterion_is_the_value_or_the_mean_of_named_sub_scores():
    import pytest
    from t2t.metric import Score
    criterion = load("crossfold").criterion
    score = Score("rouge", 30.0, details={"rouge1": 30.0, "rouge2": 9.0, "rougeL": 27.0, "ci95": {}})
    assert criterion(score, []) == 30.0
    assert criterion(score, ["rouge1", "rouge2", "rougeL"]) == 22.0
    with pytest.raises(SystemExit, match="no sub-score rouge3; it has rouge1, rouge2, rougeL"):
        criterion(score, ["rouge3"])


def test_crossfold_names_the_step_of_the_weights_it_chose():
    step = load("crossfold").checkpoint_step
    assert step("runs/x/checkpoints/step_00000800.pt", {"step": 4707, "best_step": 4400}) == 800
    assert step("runs/x", {"step": 4707, "best_step": 4400}) == 4400
