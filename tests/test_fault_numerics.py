"""Numerical faults: non-finite losses skip the update (and stop the run past a limit); an
out-of-memory batch is retried in halves with the same result."""

import dataclasses
import logging
import types

import pytest
import torch

import t2t
from helpers import final_parameters
from t2t.errors import TrainingError
from t2t.models.rnn import RNNOptions, RNNSeq2Seq
from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlakyOptions(RNNOptions):
    arch: str = "flaky"
    nan_at: tuple[int, ...] = t2t.option((), help="training forward passes (1-based) that return NaN")
    oom_above: int = t2t.option(-1, min=-1, help="batches larger than this run out of memory (-1: never)")


class Flaky(RNNSeq2Seq):
    """The RNN, but some training steps produce NaN or run out of memory."""

    name = "flaky"
    Options = FlakyOptions

    def __init__(self, options, spec):
        super().__init__(options, spec)
        self.calls = 0

    def decode_features(self, enc, tgt_in):
        h = super().decode_features(enc, tgt_in)
        if self.training:
            if self.options.oom_above >= 0 and tgt_in.shape[0] > self.options.oom_above:
                raise torch.OutOfMemoryError("simulated: CUDA out of memory")
            self.calls += 1
            if self.calls in self.options.nan_at:
                h = h * float("nan")
        return h


def plugin():
    mod = types.ModuleType("flaky_plugin")
    mod.t2t_register_models = t2t.hookimpl(lambda register: register(Flaky))
    return mod


def recipe(tmp_path, name, **model):
    return load_recipe(tiny_recipe(output_dir=str(tmp_path / name), model={"arch": "flaky", "dropout": 0.0, **model},
                                   data={"train_size": 300},
                                   train={"max_steps": 12, "validate_every": 6, "valid_max_sentences": 0,
                                          "max_tokens": 400, "threads": 1, "max_nonfinite": 2}))


def test_nonfinite_loss_skips_the_update(tmp_path, make_registry, caplog):
    make_registry(plugin())
    with caplog.at_level(logging.WARNING, logger="t2t"):
        summary = train(recipe(tmp_path, "once", nan_at=(3,)))
    assert summary["step"] == 12 and summary["status"] == "max_steps"
    assert "step 3: non-finite loss or gradient; update skipped (1 of at most 2)" in caplog.text
    weights, _ = final_parameters(tmp_path / "once")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_too_many_nonfinite_losses_stop_with_a_message(tmp_path, make_registry):
    make_registry(plugin())
    with pytest.raises(TrainingError, match=r"3 updates had non-finite loss .*train.max_nonfinite = 2"):
        train(recipe(tmp_path, "many", nan_at=(2, 4, 5)))


def test_out_of_memory_batches_are_retried_in_halves(tmp_path, make_registry, caplog):
    make_registry(plugin())
    train(recipe(tmp_path, "roomy"))
    with caplog.at_level(logging.WARNING, logger="t2t"):
        train(recipe(tmp_path, "tight", oom_above=20))
    assert "out of cpu memory; retrying the update in 2 smaller batches" in caplog.text
    roomy, _ = final_parameters(tmp_path / "roomy")
    tight, _ = final_parameters(tmp_path / "tight")
    for k in roomy:
        assert torch.allclose(roomy[k], tight[k], atol=1e-5), k


def test_out_of_memory_with_single_examples_is_an_error(tmp_path, make_registry):
    make_registry(plugin())
    with pytest.raises(TrainingError, match="out of cpu memory even with one example per batch; lower train.max_tokens"):
        train(recipe(tmp_path, "none", oom_above=0))
