"""Bad data is reported where it is bad (file and line), or skipped and counted when the recipe says so."""

import logging

import pytest

from helpers import write
from t2t.data import Problems, read_jsonl, read_parallel
from t2t.dataset import Encoder, encode_in_memory
from t2t.errors import DataError
from t2t.assembly import build_task
from t2t.recipe import load_recipe
from t2t.task import Example
from t2t.trainer import train


def test_parallel_files_mismatch_names_file_and_line(tmp_path):
    src = write(tmp_path / "train.de", "a\nb\nc\n")
    tgt = write(tmp_path / "train.en", "A\nB\n")
    with pytest.raises(DataError, match=r"train.de:3: train.de has 3 lines but train.en has 2"):
        list(read_parallel(src, tgt, Problems()))

def test_invalid_utf8_and_empty_lines(tmp_path):
    (tmp_path / "train.de").write_bytes(b"gut\n\xff\xfe kaputt\nja\n\n")
    write(tmp_path / "train.en", "good\nbroken\nyes\nempty\n")
    with pytest.raises(DataError, match=r"train.de:2: not valid UTF-8"):
        list(read_parallel(tmp_path / "train.de", tmp_path / "train.en", Problems()))
    problems = Problems("skip")
    pairs = list(read_parallel(tmp_path / "train.de", tmp_path / "train.en", problems))
    assert [p[0] for p in pairs] == ["gut", "ja"]
    assert problems.count == 2 and "train.de:4: empty line" in problems.summary()

def test_jsonl_errors(tmp_path):
    p = write(tmp_path / "x.jsonl", '{"a": 1}\n{"a": \n[1, 2]\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: not valid JSON"):
        list(read_jsonl(p, Problems()))
    problems = Problems("skip")
    assert [o for _, o in read_jsonl(p, problems)] == [{"a": 1}]
    assert problems.count == 2

def test_missing_data_is_explained(tmp_path, registry):
    r = load_recipe({"task": "translation", "data": {"dir": "nowhere", "source": "de", "target": "en"}})
    with pytest.raises(DataError, match="no such file.*set --data-dir or T2T_DATA"):
        build_task(r, registry, data_dir=tmp_path).examples("train")

def test_length_limits_filter_or_truncate():
    exs = [Example("a" * n, "b" * n) for n in (3, 10, 30)]
    chars = lambda texts: [[ord(c) for c in t] for t in texts]      # noqa: E731
    kept = encode_in_memory(exs, Encoder(chars, chars, 12, 12, "filter"))
    assert kept.lengths[:, 0].tolist() == [3, 10] and kept.counts["filtered"] == 1
    cut = encode_in_memory(exs, Encoder(chars, chars, 12, 12, "truncate"))
    assert cut.lengths[:, 0].tolist() == [3, 10, 12] and cut.counts["truncated"] == 1
    assert cut.source(2).tolist() == [ord("a")] * 12 and cut.positions.tolist() == [0, 1, 2]


def translation_recipe(tmp_path, **data):
    return load_recipe({"task": "translation", "data": {"dir": str(tmp_path), "source": "de", "target": "en", **data},
                        "tokenizer": {"name": "char"}, "model": {"arch": "rnn", "embed_dim": 16, "hidden_dim": 16},
                        "train": {"max_steps": 2, "device": "cpu"}, "output_dir": str(tmp_path / "run")})


def test_empty_split_is_an_error(tmp_path, registry):
    write(tmp_path / "train.de", "")
    write(tmp_path / "train.en", "")
    with pytest.raises(DataError, match="split 'train' is empty"):
        build_task(translation_recipe(tmp_path), registry).examples("train")


def test_skip_policy_counts_and_reports_during_training(tmp_path, registry, caplog):
    good = "".join(f"wort {i}\n" for i in range(30))
    (tmp_path / "train.de").write_bytes(good.encode() + b"kaputt \xff\n\nnoch eins\n")
    write(tmp_path / "train.en", "".join(f"word {i}\n" for i in range(30)) + "broken\nempty\none more\n")
    for split in ("valid", "test"):
        write(tmp_path / f"{split}.de", "hallo\n")
        write(tmp_path / f"{split}.en", "hello\n")
    with pytest.raises(DataError, match="train.de:31: not valid UTF-8"):
        train(translation_recipe(tmp_path))
    with caplog.at_level(logging.WARNING, logger="t2t"):
        summary = train(translation_recipe(tmp_path, on_error="skip"), overwrite=True)
    assert summary["status"] == "max_steps"
    assert "skipped 2 malformed example(s)" in caplog.text and "train.de:31" in caplog.text


def test_overlong_examples_are_filtered_or_truncated_with_a_count(tmp_path, registry, caplog):
    write(tmp_path / "train.de", "kurz\n" * 20 + "lang " * 200 + "\n")
    write(tmp_path / "train.en", "short\n" * 20 + "long " * 200 + "\n")
    for split in ("valid", "test"):
        write(tmp_path / f"{split}.de", "hallo\n")
        write(tmp_path / f"{split}.en", "hello\n")
    with caplog.at_level(logging.INFO, logger="t2t"):
        train(translation_recipe(tmp_path, max_source_len=100, max_target_len=100))
    assert "20 examples kept; 1 over the length limits filtered, 0 truncated" in caplog.text


def test_sources_longer_than_the_model_takes_are_cut_not_fatal(tmp_path, registry, caplog):
    from t2t.pipeline import load
    from t2t.testing import tiny_recipe
    r = load_recipe(tiny_recipe("reverse", "transformer", output_dir=str(tmp_path / "run"),
                                model={"max_positions": 24}, train={"max_steps": 3}))
    train(r)
    pipe = load(tmp_path / "run", device="cpu")
    with caplog.at_level(logging.WARNING, logger="t2t"):
        out = pipe.generate(["a b " * 40, "c d"], max_len_a=3.0)
    assert len(out) == 2 and "1 source(s) longer than the model takes (24) were cut" in caplog.text


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=8),
       cut=st.integers(0, 10_000), fmt=st.sampled_from(["csv", "parquet"]))
def test_damaged_csv_and_parquet_files_give_rows_or_one_data_error(tmp_path, flips, cut, fmt):
    """Generated damage (flipped bytes, a cut) to a CSV or Parquet corpus: reading gives rows of
    text or a DataError naming the file, never another exception."""
    from t2t.data import read_table
    path = tmp_path / f"train.{fmt}"
    rows = [{"de": f"Satz {i}, mit \"Zeichen\"\nund Zeile", "en": f"sentence {i}"} for i in range(40)]
    if fmt == "csv":
        import csv
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["de", "en"])
            w.writeheader()
            w.writerows(rows)
    else:
        pa = pytest.importorskip("pyarrow", reason="pyarrow (t2t[parquet]) is not installed")
        import pyarrow.parquet as pq
        pq.write_table(pa.table({k: [r[k] for r in rows] for k in ("de", "en")}), path, row_group_size=16)
    data = bytearray(path.read_bytes())
    for at, bits in flips:
        data[at % len(data)] ^= bits
    path.write_bytes(bytes(data[: max(1, len(data) - cut % len(data))]))
    try:
        got = list(read_table(path, fmt, Problems("skip"), ("de", "en")))
    except DataError as e:
        assert str(path) in str(e)
        return
    assert all(isinstance(row, dict) and where.startswith(str(path)) for where, row in got)
