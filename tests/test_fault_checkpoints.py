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
    for _trial in range(3):
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


def flip_in_member(path, member_suffix: str, offset: int = 40) -> None:
    """Flip one bit inside the data of a zip member (a torch checkpoint's tensor storage)."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(member_suffix))
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        at = info.header_offset + 30 + name_len + extra_len + min(offset, info.file_size - 1)
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x10]))


def test_a_flipped_bit_or_a_cut_in_any_file_t2t_reads_is_one_message(tmp_path, registry, caplog):
    import json

    from t2t.recipe import load_recipe
    from t2t.testing import tiny_recipe
    from t2t.trainer import train
    own = {"prepared_dir": str(tmp_path / "prepared")}
    recipe = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), tokenizer={"name": "sentencepiece",
                                                                                   "vocab_size": 40},
                                     data=own, train={"max_steps": 4, "validate_every": 2, "valid_max_sentences": 0,
                                                      "keep_last": 2}))
    train(recipe)
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    good = ckpt.load(checkpoints[-1])
    assert good["checksum"] == ckpt.content_digest(good)
    # a weight
    import shutil
    for i, member in enumerate(("data/0", "data/3")):
        copy = tmp_path / f"flipped{i}.pt"
        shutil.copy(checkpoints[-1], copy)
        flip_in_member(copy, member)
        with pytest.raises(CheckpointError, match="do not match the checksum written with them"):
            ckpt.load(copy)
    # the SentencePiece model kept inside the checkpoint (a uint8 tensor among its storages)
    with zipfile_members(checkpoints[-1]) as members:
        spm_member = max(members, key=lambda i: i.file_size if "/data/" in i.filename else 0).filename
    copy = tmp_path / "spm.pt"
    shutil.copy(checkpoints[-1], copy)
    flip_in_member(copy, spm_member.split("/", 1)[1], offset=200)
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        ckpt.load(copy)
    # a cut
    data = checkpoints[-1].read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged or not a checkpoint"):
        ckpt.load(tmp_path / "cut.pt")
    # the damaged last checkpoint names what to do; the run resumes from the one before once it is gone
    flip_in_member(checkpoints[-1], "data/0")
    with pytest.raises(CheckpointError, match="t2t train --resume then continues from the one before"):
        train(recipe, resume=True)
    checkpoints[-1].unlink()
    more = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), tokenizer={"name": "sentencepiece",
                                                                                "vocab_size": 40},
                                   data=own, train={"max_steps": 4, "validate_every": 2, "valid_max_sentences": 0,
                                                    "keep_last": 2}))
    assert train(more, resume=True)["step"] == 4              # from step 2 again
    # the prepared tokenizers: damage is said and they are made again
    prepared = tmp_path / "prepared"
    tokenizers = next(prepared.glob("tokenizers-*.pt"))
    flip_in_member(tokenizers, "data/0", offset=100)
    caplog.clear()
    train(load_recipe(tiny_recipe(output_dir=str(tmp_path / "again"), tokenizer={"name": "sentencepiece",
                                                                                  "vocab_size": 40},
                                  data={"prepared_dir": str(prepared)},
                                  train={"max_steps": 1, "validate_every": 1, "valid_max_sentences": 0})))
    assert "do not match the checksum" in caplog.text and "training the tokenizers again" in caplog.text
    # a prepared manifest
    manifest = next(prepared.glob("train-*/manifest.json"))
    text = manifest.read_text()
    data = json.loads(text)
    data["counts"]["kept"] += 1
    manifest.write_text(json.dumps(data, indent=1))
    from t2t import dataset
    from t2t.errors import DataError
    with pytest.raises(DataError, match="manifest.json: its contents do not match their checksum"):
        dataset.open_split(manifest.parent)


def test_a_checkpoint_written_before_checksums_loads_with_a_note(tmp_path, caplog):
    import logging
    payload = {"format": ckpt.FORMAT, "format_version": 1, "model": {"w": torch.ones(2)}}
    torch.save(payload, tmp_path / "old.pt")
    with caplog.at_level(logging.INFO, logger="t2t"):
        assert torch.equal(ckpt.load(tmp_path / "old.pt")["model"]["w"], torch.ones(2))
    assert "written before t2t recorded checksums" in caplog.text


class zipfile_members:
    def __init__(self, path):
        import zipfile
        self.zip = zipfile.ZipFile(path)

    def __enter__(self):
        return self.zip.infolist()

    def __exit__(self, *exc):
        self.zip.close()
