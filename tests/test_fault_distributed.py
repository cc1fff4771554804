"""A worker that dies makes the other workers stop with a message instead of hanging."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import recipe_file
from t2t.testing import tiny_recipe
from test_fault_plugins import fake_distribution

CRASHER = """
import os
import threading

import t2t


@t2t.hookimpl
def t2t_run_start(run):
    if run.rank == 1:                       # the second worker dies a moment into training
        threading.Timer(1.5, lambda: os._exit(3)).start()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_surviving_worker_stops_with_a_message(tmp_path):
    fake_distribution(tmp_path / "site", "t2t-crasher", "crasher", CRASHER)
    recipe = recipe_file(tmp_path, tiny_recipe(output_dir=str(tmp_path / "run"), data={"train_size": 3000},
                                               train={"max_epochs": 50, "threads": 1, "dist_timeout": 20}))
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "t2t.cli", "train", str(recipe), "--device", "cpu"],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    started = time.time()
    out0, err0 = procs[0].communicate(timeout=120)
    procs[1].communicate(timeout=30)
    assert procs[1].returncode == 3
    assert procs[0].returncode == 1, err0[-2000:]
    assert "distributed training:" in err0 and "another worker probably stopped" in err0
    assert "Resume with --resume" in err0 and "Traceback" not in err0
    assert time.time() - started < 100


@pytest.mark.slow
def test_torchrun_job_ends_when_a_worker_dies(tmp_path):
    fake_distribution(tmp_path / "site", "t2t-crasher", "crasher", CRASHER)
    recipe = recipe_file(tmp_path, tiny_recipe(output_dir=str(tmp_path / "run"), data={"train_size": 3000},
                                               train={"max_epochs": 50, "threads": 1}))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "t2t.cli", "train", str(recipe), "--nproc", "2", "--device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    assert "exitcode" in done.stderr and "3" in done.stderr
    assert time.time() - started < 150
