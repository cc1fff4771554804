"""Checkpoints survive crashes while saving, and loading never runs code from a file."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from t2t import checkpoint as ckpt
from t2t.errors import CheckpointError


def test_bad_checkpoints_are_reported(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        ckpt.load(tmp_path / "missing.pt")
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="damaged or not a checkpoint"):
        ckpt.load(tmp_path / "trunc.pt")
    (tmp_path / "random.pt").write_bytes(random.Random(0).randbytes(5000))
    with pytest.raises(CheckpointError, match="damaged or not a checkpoint") as e:
        ckpt.load(tmp_path / "random.pt")
    assert "run code" not in str(e.value) and "weights_only=False" not in str(e.value)
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


def test_a_process_killed_while_saving_leaves_a_loadable_checkpoint(tmp_path):
    """SIGKILL a process that keeps rewriting a large checkpoint: the file always loads, whole and
    consistent with one version; resuming removes the half-written temporary file."""
    target = tmp_path / "checkpoints" / "ck.pt"
    script = textwrap.dedent(f"""
        import torch
        from t2t import checkpoint as ckpt
        for version in range(1, 10_000):
            ckpt.save({str(target)!r}, {{"version": version, "weights": torch.full((4_000_000,), float(version))}})
            print(version, flush=True)
    """)
    for trial in range(3):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "1"          # one complete save exists
        time.sleep(random.uniform(0.0, 0.3))                   # then die at an arbitrary point
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = ckpt.load(target)
        assert data["version"] >= 1
        assert data["weights"].numel() == 4_000_000
        assert bool((data["weights"] == float(data["version"])).all())
        leftovers = [p.name for p in target.parent.iterdir() if p != target]
        assert all(name.startswith(".ck.pt.") and name.endswith(".tmp") for name in leftovers)
        assert ckpt.clean_temporaries(tmp_path) == len(leftovers)
