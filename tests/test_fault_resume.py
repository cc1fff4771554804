"""A run killed at a random moment (SIGKILL) resumes to exactly the parameters of an uninterrupted run."""

import json
import random
import signal
import subprocess
import sys
import time

import torch

from helpers import final_parameters, recipe_file
from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train

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


def test_resuming_a_finished_run_trains_nothing(tmp_path, registry, caplog):
    recipe = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={
        "max_steps": 4, "validate_every": 4, "valid_max_sentences": 0, "max_tokens": 300}))
    assert train(recipe)["step"] == 4
    before, _ = final_parameters(tmp_path / "run")
    for _ in range(2):                                  # every resume, not only the first
        summary = train(recipe, resume=True)
        assert (summary["status"], summary["step"]) == ("max_steps", 4)
    assert "nothing to train" in caplog.text and "train.max_steps 4 reached at step 4" in caplog.text
    after, step = final_parameters(tmp_path / "run")
    assert step == 4 and all(torch.equal(before[k], after[k]) for k in before)
    more = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={
        "max_steps": 6, "validate_every": 4, "valid_max_sentences": 0, "max_tokens": 300}))
    assert train(more, resume=True)["step"] == 6          # a raised limit trains on
