"""Prepared datasets: the same ids and batches as encoding in memory, never trusted half-made,
rebuilt when the data or tokenizer change, shared by runs and by the nodes of a job."""

import json
import os
import random
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_same_final_parameters, two_worker_case, write
from t2t import dataset
from t2t.data import batch_indices
from t2t.errors import DataError
from t2t.assembly import build_task
from t2t.recipe import load_recipe
from t2t.assembly import prepare
from t2t.trainer import train


def plain_batches(lengths, max_tokens, max_sentences=None, shuffle=False, seed=0):
    """The definition: shuffle, stable sort by (source, target) length, cut greedily, shuffle the batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: (lengths[i][0], lengths[i][1]))
    batches, current, longest = [], [], 0
    for i in order:
        size = max(lengths[i][0], lengths[i][1] + 1)
        grown = max(longest, size)
        if current and (grown * (len(current) + 1) > max_tokens or
                        (max_sentences is not None and len(current) >= max_sentences)):
            batches.append(current)
            current, grown = [], size
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def test_vectorised_batches_equal_the_plain_definition():
    for trial in range(200):
        rng = random.Random(trial)
        lengths = [(rng.randint(0, 60), rng.randint(0, 40)) for _ in range(rng.randint(0, 300))]
        args = (lengths, rng.choice([1, 7, 64, 300, 2000]), rng.choice([None, 1, 3, 16]))
        shuffle = trial % 3 != 0
        got = [b.tolist() for b in batch_indices(*args, shuffle=shuffle, seed=trial)]
        assert got == plain_batches(*args, shuffle=shuffle, seed=trial), trial


def corpus(folder, n=300, seed=0):
    rng = random.Random(seed)
    words = ["haus", "baum", "katze", "hund", "rot", "blau", "gross", "klein", "und", "der", "die", "das"]
    src = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(n)]
    write(folder / "train.de", "".join(s + "\n" for s in src))
    write(folder / "train.en", "".join(" ".join(reversed(s.split())).upper() + "\n" for s in src))
    for split in ("valid", "test"):
        write(folder / f"{split}.de", "katze und hund\n")
        write(folder / f"{split}.en", "HUND UND KATZE\n")


def recipe(tmp_path, tokenizer="word", **data):
    return load_recipe({"task": "translation",
                        "data": {"dir": str(tmp_path / "data"), "source": "de", "target": "en",
                                 "max_source_len": 10, "overlong": "truncate", **data},
                        "tokenizer": {"name": tokenizer, **({"vocab_size": 40} if tokenizer == "sentencepiece" else {})},
                        "model": {"arch": "rnn", "embed_dim": 16, "hidden_dim": 16},
                        "train": {"max_steps": 6, "max_tokens": 200, "device": "cpu", "validate_every": 3,
                                  "valid_max_sentences": 0},
                        "output_dir": str(tmp_path / "run")})


@pytest.mark.parametrize("tokenizer", ["word", "sentencepiece"])
def test_prepared_split_holds_the_ids_and_batches_of_encoding_in_memory(tmp_path, registry, tokenizer):
    corpus(tmp_path / "data")
    r = recipe(tmp_path, tokenizer)
    summary = prepare(r)
    split = dataset.open_split(Path(summary["splits"]["train"]["folder"]))
    assert isinstance(split.src, np.memmap) and split.src.dtype == np.uint16
    from t2t import checkpoint as ckpt
    from t2t.assembly import build_tokenizers
    task = build_task(r, registry)
    src_tok, tgt_tok = build_tokenizers(r, registry, task, states=ckpt.load(summary["tokenizers"])["tokenizers"])
    examples = task.examples("train")
    assert len(split) == len(examples) == split.counts["kept"] and split.counts["truncated"] > 0
    for i, ex in enumerate(examples):
        assert split.positions[i] == i
        assert split.source(i).tolist() == src_tok.encode(ex.source)[:10]
        assert split.target(i).tolist() == tgt_tok.encode(ex.target)
    in_memory = [(min(len(src_tok.encode(ex.source)), 10), len(tgt_tok.encode(ex.target))) for ex in examples]
    assert split.lengths.tolist() == [list(x) for x in in_memory]
    for seed in (1, 2):
        got = [b.tolist() for b in batch_indices(split.lengths, 150, shuffle=True, seed=seed)]
        assert got == plain_batches(in_memory, 150, shuffle=True, seed=seed)
    b = split.collate([3, 0], pad=0, bos=2, eos=3)
    first = src_tok.encode(examples[3].source)[:10]
    assert b.src[0, : len(first)].tolist() == first and b.index == [3, 0]
    assert b.tgt_out[0, : b.tgt_out.shape[1]].tolist()[: len(tgt_tok.encode(examples[3].target)) + 1] == \
        tgt_tok.encode(examples[3].target) + [3]


def test_training_reuses_the_prepared_split_and_a_changed_file_rebuilds(tmp_path, registry, caplog):
    import logging
    corpus(tmp_path / "data")
    r = recipe(tmp_path)
    first = prepare(r)["splits"]["train"]["folder"]
    stamp = os.stat(os.path.join(first, "manifest.json")).st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="t2t"):
        train(r)
    assert "prepared train" not in caplog.text and "reusing" in caplog.text           # nothing encoded again
    assert os.stat(os.path.join(first, "manifest.json")).st_mtime_ns == stamp
    with open(tmp_path / "data" / "train.de", "a") as f, open(tmp_path / "data" / "train.en", "a") as g:
        f.write("rot und blau\n")
        g.write("BLAU UND ROT\n")
    second = prepare(r)["splits"]["train"]["folder"]
    assert second != first and json.loads(open(os.path.join(second, "manifest.json")).read())["counts"]["read"] == 301
    other_limits = prepare(recipe(tmp_path, max_source_len=5))["splits"]["train"]["folder"]
    assert other_limits not in (first, second)


def test_a_damaged_prepared_file_is_refused_with_its_name(tmp_path, registry):
    corpus(tmp_path / "data")
    folder = prepare(recipe(tmp_path))["splits"]["train"]["folder"]
    path = os.path.join(folder, "tgt.bin")
    data = bytearray(open(path, "rb").read())
    data[5] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(DataError, match=r"tgt\.bin: checksum differs.*delete .* to prepare it again"):
        train(recipe(tmp_path))
    open(path, "ab").write(b"\0\0")
    with pytest.raises(DataError, match=r"tgt\.bin: \d+ bytes where the manifest says \d+"):
        dataset.open_split(Path(folder))



def test_a_prepared_split_without_its_manifest_is_prepared_again(tmp_path, registry, caplog):
    corpus(tmp_path / "data")
    folder = prepare(recipe(tmp_path))["splits"]["train"]["folder"]
    os.remove(os.path.join(folder, "manifest.json"))
    for _ in range(2):                                 # and on every later run
        assert prepare(recipe(tmp_path))["splits"]["train"]["folder"] == folder
        assert os.path.exists(os.path.join(folder, "manifest.json"))
    assert "without its manifest.json" in caplog.text
    train(recipe(tmp_path))


KILLED = """
import os, signal, sys
from pathlib import Path
from t2t import dataset
from t2t.task import Example

class Task:
    problems = type("P", (), {"summary": staticmethod(lambda: "")})()
    def state_dict(self): return {}

def examples():
    for i in range(10 * dataset.CHUNK):
        if i == 3 * dataset.CHUNK + 7:
            os.kill(os.getpid(), signal.SIGKILL)       # dies in the middle of writing
        yield Example("a b c", "d e")

enc = dataset.Encoder(lambda xs: [[4, 5, 6]] * len(xs), lambda xs: [[7, 8]] * len(xs), vocab_size=10)
dataset._build_locked(Path(sys.argv[1]), examples, enc, Task(), "train")
"""


def test_a_prepare_killed_with_sigkill_is_never_reused(tmp_path):
    folder = tmp_path / "prepared" / "train-abc"
    script = write(tmp_path / "killed.py", textwrap.dedent(KILLED))
    done = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, timeout=120)
    assert done.returncode == -9
    assert not folder.exists()                                    # nothing under the name a run trusts
    left = sorted(p.name for p in folder.parent.iterdir())
    assert any(".tmp-" in n for n in left) and f".{folder.name}.lock" in left
    # a later build finds the lock's owner dead, clears what it left, and builds
    enc = dataset.Encoder(lambda xs: [[4, 5]] * len(xs), lambda xs: [[7]] * len(xs), vocab_size=10)
    from t2t.task import Example

    class Task:
        problems = type("P", (), {"summary": staticmethod(lambda: "")})()

        def state_dict(self):
            return {}
    dataset._build_locked(folder, lambda: (Example("x", "y") for _ in range(50)), enc, Task(), "train")
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]
    split = dataset.open_split(folder)
    assert len(split) == 50 and split.source(49).tolist() == [4, 5]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_through_torchrun_equal_one_process_with_the_same_batches(tmp_path, registry):
    """Two torchrun agents on this machine, meeting by c10d rendezvous (gloo), one worker each, with
    one prepared-data folder (as on a shared file system); the weights equal one process taking
    both workers' batches."""
    path = two_worker_case(tmp_path, "nodes", 6, prepared_dir=str(tmp_path / "prepared"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    master = f"127.0.0.1:{free_port()}"
    agents = [subprocess.Popen([sys.executable, "-m", "t2t.cli", "--quiet", "train", str(path), "--device", "cpu",
                                "--nnodes", "2", "--node-rank", str(rank), "--master", master],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
              for rank in (0, 1)]
    outs = [a.communicate(timeout=300) for a in agents]
    assert all(a.returncode == 0 for a in agents), [o[1][-2000:] for o in outs]
    assert_same_final_parameters(tmp_path / "single", tmp_path / "nodes", 6)
    assert len(list((tmp_path / "prepared").glob("train-*"))) == 1     # one folder for both runs and nodes


FULL = """
import resource, signal, sys
from pathlib import Path
from t2t import dataset
from t2t.errors import DataError
from t2t.task import Example

class Task:
    problems = type("P", (), {"summary": staticmethod(lambda: "")})()
    def state_dict(self): return {}

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)        # a write past the limit fails as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
enc = dataset.Encoder(lambda xs: [list(range(4, 60))] * len(xs), lambda xs: [[7, 8]] * len(xs), vocab_size=100)
try:
    dataset._build_locked(Path(sys.argv[1]), lambda: (Example("a", "b") for _ in range(50_000)), enc, Task(), "train")
except DataError as e:
    print(e)
    sys.exit(3)
"""


def test_a_full_disk_ends_with_the_file_named_and_nothing_left_to_trust(tmp_path):
    folder = tmp_path / "prepared" / "train-abc"
    script = write(tmp_path / "full.py", textwrap.dedent(FULL))
    done = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "src.bin: cannot write the prepared data (File too large)" in done.stdout
    assert list(folder.parent.iterdir()) == []                      # the half-written folder and the lock are gone


def test_prepare_command_reports_the_split_and_train_reuses_it(tmp_path, registry, capsys):
    from t2t.cli import main
    import yaml
    corpus(tmp_path / "data")
    r = recipe(tmp_path)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(r.to_dict()))
    assert main(["prepare", str(path)]) == 0
    out = capsys.readouterr().out
    assert "train: 300 examples in " in out and "52 truncated" in out and "tokenizers: " in out
    from t2t.dataset import cache_root
    folder = Path(out.split("train: 300 examples in ")[1].split(" (")[0])
    assert folder.parent == cache_root() and folder.exists()       # the cache every run of this data shares
    before = {e["name"] for e in dataset.cache_entries(cache_root())}
    assert main(["train", str(path)]) == 0
    assert {e["name"] for e in dataset.cache_entries(cache_root())} == before      # nothing prepared again
    # a second run of another setting into another folder reuses the same split and tokenizers
    assert main(["train", str(path), "model.hidden_dim=24", f"output_dir={tmp_path / 'other'}"]) == 0
    assert {e["name"] for e in dataset.cache_entries(cache_root())} == before
    assert main(["cache", "list"]) == 0
    listed = capsys.readouterr().out
    assert folder.name in listed and "train: 300 examples" in listed
    assert main(["cache", "clear", folder.name]) == 0 and not folder.exists()
    assert main(["cache", "clear", "nothing-here"]) == 1


def test_a_split_with_nothing_left_is_empty_not_an_error():
    from t2t.task import Example
    enc = dataset.Encoder(lambda xs: [[] for _ in xs], lambda xs: [[5] for _ in xs], vocab_size=10)
    split = dataset.encode_in_memory([Example("a", "b"), Example("c", "d")], enc)
    assert len(split) == 0 and split.counts["empty"] == 2 and split.lengths.shape == (0, 2)


def test_fingerprint_follows_linked_folders_once(tmp_path):
    """Audio linked into a data folder keys prepared data like any file there; a link back up does
    not loop."""
    from t2t.dataset import fingerprint
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "a.wav").write_bytes(b"12")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("x\n")
    (data / "wav").symlink_to(audio)
    (audio / "up").symlink_to(data)                       # a cycle
    before = fingerprint(data)
    assert [f[0] for f in before] == ["train.tsv", os.path.join("wav", "a.wav")]
    (audio / "a.wav").write_bytes(b"1234")
    assert fingerprint(data) != before
