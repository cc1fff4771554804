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


def test_speaker_cv_folds_never_let_the_test_speaker_train_or_choose(tmp_path):
    """Both protocols test on every recording of the held-out speaker and on nothing else; `speakers`
    trains on all of the others' recordings (the recipe holds one of them out again), `recipe` keeps
    the others' valid recordings as the validation split, out of training."""
    import csv
    cv = load("speaker_cv")
    data = tmp_path / "data"
    (data / "wav").mkdir(parents=True)
    for split, idx in (("train", [2, 3]), ("valid", [1]), ("test", [0])):
        rows = [f"wav/{d}_{sp}_{i}.wav\t{d}\t{sp}" for sp in ("ann", "bob", "cy") for d in range(2) for i in idx]
        (data / f"{split}.tsv").write_text("path\ttranscript\tspeaker\n" + "\n".join(rows) + "\n")

    def fold(protocol):
        out = tmp_path / protocol
        cv.write_fold(data, out, cv.read_rows(data), "bob", protocol)
        return {p.stem: list(csv.DictReader(open(p), delimiter="\t")) for p in out.glob("*.tsv")}

    for protocol in ("speakers", "recipe"):
        f = fold(protocol)
        assert {r["speaker"] for r in f["test"]} == {"bob"} and len(f["test"]) == 8
        assert all(r["speaker"] != "bob" for split in f if split != "test" for r in f[split])
    speakers, recipe = fold("speakers"), fold("recipe")
    assert set(speakers) == {"train", "test"} and len(speakers["train"]) == 16
    assert len(recipe["train"]) == 12 and [r["path"] for r in recipe["valid"]] == \
        ["wav/0_ann_1.wav", "wav/1_ann_1.wav", "wav/0_cy_1.wav", "wav/1_cy_1.wav"]
    assert not {r["path"] for r in recipe["valid"]} & {r["path"] for r in recipe["train"]}
