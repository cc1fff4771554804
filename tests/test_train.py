"""Training end to end: learning, checkpoints, exact resume after SIGKILL, DDP equivalence."""

import json
import os
import subprocess
import sys

import pytest
import torch

import t2t
from helpers import assert_same_final_parameters, final_parameters, two_worker_case
from t2t.errors import TrainingError
from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["rnn", "transformer", "transformer-copy"])
def test_model_learns_reverse(tmp_path, registry, arch):
    """Trains to >= 90% exact match; the copy variant decodes (beam search included) through
    its pointer-generator mixture."""
    extra = {"model": {"dim": 64, "ff_dim": 128, "heads": 4, "layers": 2, "dropout": 0.0}} if arch != "rnn" \
        else {"model": {"embed_dim": 32, "hidden_dim": 64, "dropout": 0.0}}
    if arch == "transformer-copy":
        arch, extra["model"]["copy"], extra["tokenizer"] = "transformer", True, {"name": "char", "shared": True}
    r = load_recipe(tiny_recipe("reverse", arch, output_dir=str(tmp_path / "run"),
                                data={"train_size": 3000, "max_length": 6},
                                train={"max_epochs": 12, "max_tokens": 800, "lr": 3e-3, "warmup": 50,
                                       "schedule": "inverse_sqrt" if arch == "transformer" else "constant"},
                                **extra))
    summary = train(r)
    assert summary["status"] == "finished"
    assert summary["best"] >= 90.0, summary          # exact match on validation words
    report = t2t.evaluate(tmp_path / "run", split="test")
    assert report["metrics"]["exact_match"]["value"] >= 90.0


def test_run_directory_is_never_clobbered(tmp_path, registry):
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={"max_steps": 3}))
    train(r)
    with pytest.raises(TrainingError, match="already holds checkpoints; continue it with --resume"):
        train(r)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(r.replace(output_dir=str(tmp_path / "other")), resume=True)
    changed = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={"max_steps": 6, "lr": 1e-2}))
    with pytest.raises(TrainingError, match="--reset scheduler"):
        train(changed, resume=True)
    assert train(changed, resume=True, reset=["scheduler"])["step"] == 6
    assert train(r, overwrite=True)["step"] == 3


@pytest.mark.slow
def test_ddp_two_workers_equal_one_process_with_the_same_batches(tmp_path, registry):
    path = two_worker_case(tmp_path, "ddp", 8)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "t2t.cli", "--quiet", "train", str(path), "--nproc", "2",
                           "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_final_parameters(tmp_path / "single", tmp_path / "ddp", 8)


def test_best_k_checkpoints_and_early_stopping(tmp_path, registry):
    import json
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), metrics=["exact_match"],
                                train={"max_steps": 40, "max_epochs": 10, "validate_every": 5, "valid_max_sentences": 20,
                                       "valid_metric": "loss", "keep_best": 2, "keep_last": 1}))
    summary = train(r)
    index = json.loads((tmp_path / "run" / "checkpoints" / "index.json").read_text())
    on_disk = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert on_disk == sorted(e["name"] for e in index["checkpoints"]) and len(on_disk) <= 3
    scores = {e["name"]: e["score"] for e in index["checkpoints"]}
    assert index["last"] == "step_00000040.pt" and index["last"] in scores
    assert scores[index["best"]] == min(scores.values()) == summary["best"]      # loss: lower is better
    # no learning (lr 0): validation loss never improves, patience 2 stops after three validations
    frozen = load_recipe(tiny_recipe(output_dir=str(tmp_path / "frozen"),
                                     train={"max_steps": 100, "max_epochs": 20, "validate_every": 5,
                                            "valid_max_sentences": 0,
                                            "lr": 0.0, "patience": 2}))
    stopped = train(frozen)
    assert stopped["status"] == "early_stop" and stopped["step"] == 15


@pytest.mark.parametrize("key, value", [("patience", 3), ("average_best", 2), ("valid_metric", "loss"),
                                        ("schedule", "plateau"), ("valid_beam", 5)])
def test_settings_that_need_validation_are_refused_without_it(key, value):
    with pytest.raises(t2t.RecipeError, match=rf"train\.{key}.*validation: false"):
        load_recipe(tiny_recipe(train={"validation": False, key: value}))


@pytest.mark.parametrize("valid_beam", [1, 3])
def test_validation_during_training_scores_what_the_checkpoint_scores(tmp_path, registry, monkeypatch, valid_beam):
    # every validation decodes with the weights of that moment and the beam train.valid_beam says: the
    # last one (after several of them) gives the score a fresh evaluation of its checkpoint gives
    from t2t.pipeline import Pipeline
    beams, search = [], Pipeline.search

    def spy(self, sources, opts=None, *a, **k):
        beams.append(opts.beam)
        return search(self, sources, opts, *a, **k)
    monkeypatch.setattr(Pipeline, "search", spy)
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), metrics=["chrf"], decode={"beam": 5},
                                train={"max_epochs": 4, "lr": 1e-2, "threads": 1, "valid_beam": valid_beam}))
    summary = train(r)
    assert set(beams) == {valid_beam}
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    scores = [row["chrf"] for row in rows if row["event"] == "valid"]
    assert len(scores) == 4 and len(set(scores)) == 4
    report = t2t.evaluate(tmp_path / "run" / "checkpoints" / summary["last_checkpoint"], split="valid",
                          beam=valid_beam)
    assert report["metrics"]["chrf"]["value"] == pytest.approx(scores[-1], abs=1e-6)


def test_tensorboard_option(tmp_path, registry):
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={"max_steps": 4, "tensorboard": True,
                                                                          "log_every": 2}))
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(t2t.T2TError, match=r"pip install 't2t\[tensorboard\]'"):
            train(r)
        return
    train(r)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
@pytest.mark.skipif(not any(__import__("shutil").which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile (inductor) on CPU needs a C++ compiler")
def test_compiled_training_matches_eager(tmp_path, registry):
    """train.compile: the torch.compile'd model trains to the same weights as eager mode, and the
    checkpoint holds the plain model's keys. (SGD: Adam would turn the rounding noise in the
    gradients of attention key biases, which are zero in exact arithmetic, into full-size steps.)"""
    weights = {}
    for compiled in (False, True):
        run = tmp_path / f"run{int(compiled)}"
        train(load_recipe(tiny_recipe(arch="transformer", output_dir=str(run), model={"dropout": 0.0},
                                      train={"max_steps": 4, "compile": compiled, "threads": 1,
                                             "optimizer": "sgd", "lr": 0.5})))
        weights[compiled], _ = final_parameters(run)
    assert weights[True].keys() == weights[False].keys()
    assert all(torch.allclose(weights[True][k], weights[False][k], atol=1e-5) for k in weights[False])


def test_checkpointed_activations_train_to_the_same_weights(tmp_path, registry):
    """train.checkpoint_activations recomputes each layer in the backward pass with the same dropout
    masks: the weights after a few updates equal those of a run that kept the activations, and
    every layer ran twice an update."""
    import torch

    from helpers import final_parameters
    from t2t.models.base import ModelSpec
    from t2t.models.transformer import Transformer, TransformerOptions
    weights = {}
    for flag in (False, True):
        r = tiny_recipe("dates", "transformer", output_dir=str(tmp_path / f"run{flag}"),
                        data={"train_size": 200, "valid_size": 10, "test_size": 10},
                        model={"dim": 32, "ff_dim": 64, "layers": 2, "heads": 2, "dropout": 0.3},
                        train={"max_steps": 4, "validate_every": 4, "checkpoint_activations": flag, "threads": 1})
        train(load_recipe(r))
        weights[flag] = final_parameters(tmp_path / f"run{flag}")[0]
    assert all(torch.allclose(weights[False][k], weights[True][k], atol=1e-6) for k in weights[False])
    model = Transformer(TransformerOptions(dim=16, ff_dim=32, layers=2, heads=2), ModelSpec(20, 20)).train()
    model.checkpoint_layers = True
    calls = []
    for layer in [*model.encoder, *model.decoder]:
        def counted(*args, _forward=layer.forward, **kwargs):
            calls.append(1)
            return _forward(*args, **kwargs)
        layer.forward = counted
    src, tgt = torch.randint(4, 20, (3, 7)), torch.randint(4, 20, (3, 6))
    model(src, torch.tensor([7, 5, 3]), tgt).sum().backward()
    assert len(calls) == 2 * 4                                   # forward, then again in backward
