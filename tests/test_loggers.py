"""Training loggers named in a recipe (`loggers:`): MLflow against its default local store (no
server), Weights & Biases offline, TensorBoard's missing extra named; a resumed run goes on in the
same tracker run; unknown loggers and keys are refused with the recipe's line."""

import json
import os

import pytest

from t2t.errors import RecipeError, T2TError
from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train


def recipe(tmp_path, loggers, steps=6, **train_opts):
    return load_recipe(tiny_recipe("reverse", output_dir=str(tmp_path / "run"), loggers=loggers,
                                   data={"train_size": 120, "valid_size": 10, "test_size": 10},
                                   train={"max_steps": steps, "max_epochs": 50, "validate_every": 3, "log_every": 2,
                                          **train_opts}))


def test_mlflow_records_the_run_in_its_default_store(tmp_path, monkeypatch, registry):
    tracking = pytest.importorskip("mlflow.tracking", reason="mlflow (t2t[mlflow]) is not installed")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert train(recipe(tmp_path, ["mlflow"]))["step"] == 6
    client = tracking.MlflowClient()                 # MLflow's default store, as a user would open it
    runs = client.search_runs([client.get_experiment_by_name("t2t").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].info.run_name == "run"
    run_id = runs[0].info.run_id
    assert runs[0].data.params["train.max_steps"] == "6" and runs[0].data.params["task"] == "reverse"
    valid = [(m.step, m.value) for m in client.get_metric_history(run_id, "valid/loss")]
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert valid == [(r["step"], pytest.approx(r["loss"])) for r in log if r["event"] == "valid"] and len(valid) == 2
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [2, 4, 6]
    # resumed with a higher limit: the same MLflow run goes on
    assert train(recipe(tmp_path, ["mlflow"], steps=9), resume=True)["step"] == 9
    runs = client.search_runs([client.get_experiment_by_name("t2t").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == run_id
    assert [m.step for m in client.get_metric_history(run_id, "valid/loss")] == [3, 6, 9]


def test_wandb_offline_writes_the_run_under_the_run_folder(tmp_path, registry):
    pytest.importorskip("wandb", reason="wandb (t2t[wandb]) is not installed")
    os.environ.setdefault("WANDB_SILENT", "true")
    train(recipe(tmp_path, [{"name": "wandb", "mode": "offline", "project": "tests"}]))
    run_id = json.loads((tmp_path / "run" / "wandb_run.json").read_text())["id"]
    files = list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 1
    data = files[0].read_bytes()                    # W&B's own record format: the keys are in it
    assert all(key in data for key in (b"valid/loss", b"valid/exact_match", b"train/loss", b"max_steps"))


def test_a_missing_tracker_is_named_with_its_extra(tmp_path, registry, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)        # as if it were not installed
    with pytest.raises(T2TError, match=r"loggers: tensorboard needs the torch.utils.tensorboard package: "
                                       r"pip install 't2t\[tensorboard\]'"):
        train(recipe(tmp_path, ["tensorboard"]))


def test_unknown_loggers_and_keys_are_refused(tmp_path, registry):
    with pytest.raises(RecipeError, match=r"loggers\[0\]: .*mlfow.*mlflow"):
        recipe(tmp_path, ["mlfow"])
    with pytest.raises(RecipeError, match=r"loggers\[0\].experimnt: unknown key; allowed: name, tracking_uri, "
                                          r"experiment, run_name"):
        recipe(tmp_path, [{"name": "mlflow", "experimnt": "x"}])
    with pytest.raises(RecipeError, match=r"'wandb' is listed twice"):
        recipe(tmp_path, ["wandb", "wandb"])
    assert "loggers" not in recipe(tmp_path, []).to_dict()          # saved recipes without loggers unchanged


def test_tensorboard_named_in_the_recipe_writes_event_files(tmp_path, registry):
    pytest.importorskip("tensorboard", reason="tensorboard (t2t[tensorboard]) is not installed")
    train(recipe(tmp_path, ["tensorboard"]))
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 100), st.integers(1, 255)), max_size=4), cut=st.integers(0, 40))
def test_a_damaged_tracker_run_id_file_starts_a_new_tracker_run(tmp_path, flips, cut):
    """The run id file a resumed run reads back (flipped bytes, a cut): its id where it still is one,
    else a new id, kept; never an exception."""
    from types import SimpleNamespace

    from t2t_plugins.loggers import _kept_id
    run = SimpleNamespace(directory=tmp_path, resumed=True)
    path = tmp_path / "mlflow_run.json"
    path.write_text(json.dumps({"id": "abc123"}))
    data = bytearray(path.read_bytes())
    for at, bits in flips:
        data[at % len(data)] ^= bits
    path.write_bytes(bytes(data[: len(data) - cut % len(data)]))
    run_id, new = _kept_id(run, "mlflow_run.json", lambda: "fresh")
    assert isinstance(run_id, str) and run_id and new == (run_id == "fresh")
    if not flips and not cut % len(data):
        assert (run_id, new) == ("abc123", False)
    assert _kept_id(run, "mlflow_run.json", lambda: "other") == (run_id, False)      # what it kept is read back
