"""Devices and precision: what a precision setting resolves to, and bf16 training on CPU."""


import pytest
import torch

import t2t
from helpers import final_parameters
from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train


def test_precision_resolution(monkeypatch):
    from t2t.device import decode_dtype, reduced_dtype
    cpu = torch.device("cpu")
    with pytest.raises(t2t.T2TError, match="decode.precision fp16 needs a CUDA GPU"):
        decode_dtype("fp16", cpu)
    assert reduced_dtype("auto", cpu, "train.precision") is None
    monkeypatch.setattr("t2t.device.fast_bf16", lambda device: True)
    assert reduced_dtype("auto", cpu, "train.precision") is None          # auto keeps a CPU in fp32
    assert decode_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr("t2t.device.fast_bf16", lambda device: False)
    assert decode_dtype("bf16", cpu) == torch.float32


def test_bf16_autocast_training_on_cpu(tmp_path, registry, monkeypatch):
    # the bf16 path itself, whether or not this CPU runs bf16 natively (emulated is slow, not wrong)
    monkeypatch.setattr("t2t.device.fast_bf16", lambda device: True)
    r = load_recipe(tiny_recipe(arch="transformer", output_dir=str(tmp_path / "run"),
                                train={"max_steps": 6, "precision": "bf16"}))
    summary = train(r)
    assert summary["step"] == 6
    weights, _ = final_parameters(tmp_path / "run")
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())
    fp32 = load_recipe(tiny_recipe(arch="transformer", output_dir=str(tmp_path / "fp32"),
                                   train={"max_steps": 6, "precision": "fp32"}))
    train(fp32)
    reference, _ = final_parameters(tmp_path / "fp32")
    assert any(not torch.equal(weights[k], reference[k]) for k in weights)      # bf16 really ran


def test_bf16_on_a_cpu_without_native_bf16_trains_in_fp32(tmp_path, registry, monkeypatch, caplog):
    from t2t.device import _warn_emulated_bf16
    monkeypatch.setattr("t2t.device.fast_bf16", lambda device: False)
    _warn_emulated_bf16.cache_clear()
    runs = {}
    for precision in ("bf16", "fp32"):
        r = load_recipe(tiny_recipe(output_dir=str(tmp_path / precision), train={"max_steps": 4, "precision": precision}))
        train(r)
        runs[precision], _ = final_parameters(tmp_path / precision)
    assert "train.precision bf16: this CPU has no native bf16" in caplog.text
    assert all(torch.equal(runs["bf16"][k], runs["fp32"][k]) for k in runs["fp32"])
