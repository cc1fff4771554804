"""Training end to end: learning, checkpoints, exact resume after SIGKILL, DDP equivalence."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import t2t
from t2t import checkpoint as ckpt
from t2t.errors import CheckpointError, TrainingError
from t2t.pipeline import load
from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train


def recipe_file(tmp_path: Path, recipe: dict, name="recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_model_learns_reverse(tmp_path, registry, arch):
    extra = {"model": {"dim": 64, "ff_dim": 128, "heads": 4, "layers": 2, "dropout": 0.0}} if arch == "transformer" \
        else {"model": {"embed_dim": 32, "hidden_dim": 64, "dropout": 0.0}}
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


def test_checkpoint_is_self_contained_and_safe(tmp_path, registry):
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={"max_epochs": 1}))
    summary = train(r)
    path = tmp_path / "run" / "checkpoints" / summary["last_checkpoint"]
    data = torch.load(path, weights_only=True)          # tensors and plain types only
    assert data["format"] == "t2t-checkpoint" and "reverse" in data["recipe"]
    assert data["tokenizers"]["target"]["vocab"]["tokens"][:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert data["plugins"]["t2t"] == t2t.__version__
    # a pipeline rebuilt from the file alone gives identical logits
    pipe = load(path, device="cpu")
    src = torch.tensor([[5, 6, 7, 8]])
    tgt = torch.tensor([[2, 8, 7]])
    trained = type(pipe.model)(pipe.model.options, pipe.model.spec)
    trained.load_state_dict(data["model"])
    trained.eval()
    assert torch.equal(trained(src, torch.tensor([4]), tgt), pipe.model(src, torch.tensor([4]), tgt))
    assert pipe.generate(["a b c"])[0].count(" ") >= 0


def test_bad_checkpoints_are_reported(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        ckpt.load(tmp_path / "missing.pt")
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="truncated or not a torch file"):
        ckpt.load(tmp_path / "trunc.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a t2t checkpoint"):
        ckpt.load(tmp_path / "foreign.pt")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned > " + str(tmp_path / "owned"),))
    torch.save({"format": "t2t-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to load"):
        ckpt.load(tmp_path / "evil.pt")
    assert not (tmp_path / "owned").exists()


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


def final_parameters(run_dir: Path) -> dict:
    data = ckpt.load(ckpt.resolve(run_dir, "last"))
    return data["model"], data["train_state"]["step"]


RESUME_RECIPE = dict(data={"train_size": 800}, model={"dropout": 0.2},
                     train={"max_steps": 36, "validate_every": 4, "valid_max_sentences": 0, "threads": 1,
                            "max_tokens": 300, "keep_last": 2, "log_every": 1, "schedule": "cosine",
                            "warmup": 5})


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, registry):
    straight = load_recipe(tiny_recipe(output_dir=str(tmp_path / "straight"), **RESUME_RECIPE))
    train(straight)
    expected, steps = final_parameters(tmp_path / "straight")

    path = recipe_file(tmp_path, tiny_recipe(output_dir=str(tmp_path / "killed"), **RESUME_RECIPE))
    kill_after = random.Random().randint(6, 28)                 # a step not known in advance
    proc = subprocess.Popen([sys.executable, "-m", "t2t.cli", "--quiet", "train", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if log.exists() and any(json.loads(line).get("step", 0) >= kill_after
                                for line in log.read_text().splitlines() if line.strip()):
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = final_parameters(tmp_path / "killed")[1]
    assert killed_at < steps
    resumed = load_recipe(path)
    summary = train(resumed, resume=True)
    assert summary["step"] == steps
    got, _ = final_parameters(tmp_path / "killed")
    for k in expected:
        assert torch.equal(got[k], expected[k]), f"{k} differs after resuming from step {killed_at}"


def test_ddp_two_workers_equal_one_process_with_the_same_batches(tmp_path, registry):
    common = dict(data={"train_size": 800}, model={"dropout": 0.0},
                  train={"max_steps": 8, "validate_every": 8, "valid_max_sentences": 0, "threads": 1,
                         "max_tokens": 300})
    single = tiny_recipe(output_dir=str(tmp_path / "single"), **common)
    single["train"]["update_freq"] = 2
    train(load_recipe(single))
    path = recipe_file(tmp_path, tiny_recipe(output_dir=str(tmp_path / "ddp"), **common))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "t2t.cli", "--quiet", "train", str(path), "--nproc", "2",
                           "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, steps_a = final_parameters(tmp_path / "single")
    b, steps_b = final_parameters(tmp_path / "ddp")
    assert steps_a == steps_b == 8
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5), k


def test_label_smoothing_matches_torch():
    from t2t.loss import label_smoothed_loss
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    target = torch.randint(1, 11, (3, 5))
    target[0, 3:] = 0
    loss, nll = label_smoothed_loss(logits, target, 0.1, 0)
    ref = torch.nn.functional.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=0,
                                            label_smoothing=0.1, reduction="sum")
    assert torch.allclose(loss, ref, atol=1e-5)
    ref_nll = torch.nn.functional.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=0, reduction="sum")
    assert torch.allclose(nll, ref_nll, atol=1e-5)


def test_sliced_loss_equals_full_loss():
    from t2t.data import Encoded, collate
    from t2t.models.base import ModelSpec
    from t2t.models.transformer import Transformer, TransformerOptions
    from t2t.loss import label_smoothed_loss, sequence_loss
    torch.manual_seed(0)
    model = Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=1, dropout=0.0), ModelSpec(20, 20)).eval()
    batch = collate([Encoded([5, 6, 7, 8], [9, 10, 11], 0), Encoded([5, 6], [12], 1)], 0, 2, 3)
    full = label_smoothed_loss(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out, 0.1, 0)
    sliced = sequence_loss(model, model.out, batch, 0.1, 0, rows=2)
    assert torch.allclose(full[0], sliced[0]) and torch.allclose(full[1], sliced[1])
