"""Helpers shared by test modules (import them from here, not from conftest)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from t2t import checkpoint as ckpt
from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train

FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def environment() -> dict:
    """The test interpreter's bin folder first on PATH; pip builds with the installed setuptools
    where there is one (no download), and installs no dependencies (t2t is there already)."""
    import importlib.util
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PIP_NO_DEPS": "true", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": ""}
    if importlib.util.find_spec("setuptools") is not None:
        env["PIP_NO_BUILD_ISOLATION"] = "false"
    return env


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, info, body) of every fenced code block of a Markdown text."""
    return [(lang, info.strip(), body) for lang, info, body in FENCE.findall(text)]


def run_doc_blocks(doc: Path, folder: Path, env: dict, timeout: int = 300) -> int:
    """Run a page's blocks in order in `folder`: `file=PATH` blocks are written there, `run`
    blocks are executed (bash, or Python); returns how many blocks there were."""
    found = blocks(doc.read_text(encoding="utf-8"))
    for i, (lang, info, body) in enumerate(found):
        if info.startswith("file="):
            path = folder / info[len("file="):]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
            continue
        assert info == "run", f"{doc.name} block {i} ({lang}) is neither `file=PATH` nor `run`"
        cmd = ["bash", "-euo", "pipefail", "-c", body] if lang == "bash" else [sys.executable, "-c", body]
        done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, (f"{doc.name} block {i} failed:\n{body}\n--- stdout\n{done.stdout[-2000:]}\n"
                                      f"--- stderr\n{done.stderr[-3000:]}")
    return len(found)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def final_parameters(run_dir: Path):
    """(model weights, step) of a run's last checkpoint."""
    data = ckpt.load(ckpt.resolve(run_dir, "last"))
    return data["model"], data["train_state"]["step"]


def recipe_file(tmp_path: Path, recipe: dict, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def two_worker_case(tmp_path: Path, name: str, steps: int, **data) -> Path:
    """Train one process taking two batches an update (`tmp_path/single`); return the recipe file
    of the same run for two workers taking one each (output `tmp_path/name`)."""
    common = dict(data={"train_size": 800, **data}, model={"dropout": 0.0},
                  train={"max_steps": steps, "validate_every": steps, "valid_max_sentences": 0, "threads": 1,
                         "max_tokens": 300})
    single = tiny_recipe(output_dir=str(tmp_path / "single"), **common)
    single["train"]["update_freq"] = 2
    train(load_recipe(single))
    return recipe_file(tmp_path, tiny_recipe(output_dir=str(tmp_path / name), **common))


def assert_same_final_parameters(run_a: Path, run_b: Path, steps: int) -> None:
    a, steps_a = final_parameters(run_a)
    b, steps_b = final_parameters(run_b)
    assert steps_a == steps_b == steps
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5), k
