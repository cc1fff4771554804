"""Readers name file and line; batches respect their token budget and replay exactly."""

import pytest
import torch

from helpers import write
from t2t.data import batch_indices, padding_ratio
from t2t.dataset import from_encoded
from t2t.errors import DataError
from t2t.recipe import load_recipe
from t2t.assembly import build_task
from t2t.task import Example


def test_batches_cover_everything_within_budget():
    import random
    rng = random.Random(0)
    lengths = []
    for _ in range(500):                                     # target lengths follow source lengths, as in real data
        n = rng.randint(1, 40)
        lengths.append((n, max(1, n + rng.randint(-3, 3))))
    batches = [b.tolist() for b in batch_indices(lengths, max_tokens=300, shuffle=True, seed=3)]
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        longest = max(max(lengths[i][0], lengths[i][1] + 1) for i in b)
        assert longest * len(b) <= 300 or len(b) == 1
    assert [b.tolist() for b in batch_indices(lengths, 300, shuffle=True, seed=3)] == batches
    assert [b.tolist() for b in batch_indices(lengths, 300, shuffle=True, seed=4)] != batches
    # length bucketing keeps padding small; batches of arbitrary examples would not
    assert padding_ratio(batches, lengths) < 0.1
    arbitrary = [list(range(i, min(i + 10, 500))) for i in range(0, 500, 10)]
    assert padding_ratio(arbitrary, lengths) > 0.3
    assert all(len(b) <= 7 for b in batch_indices(lengths, 300, max_sentences=7))


def test_collate_pads_and_shifts():
    b = from_encoded([[5, 6, 7], [5]], [[8, 9], [8]]).collate([0, 1], pad=0, bos=2, eos=3)
    assert b.src.tolist() == [[5, 6, 7], [5, 0, 0]]
    assert b.tgt_in.tolist() == [[2, 8, 9], [2, 8, 0]]
    assert b.tgt_out.tolist() == [[8, 9, 3], [8, 3, 0]]
    assert b.target_tokens == 5 and b.src_lengths.tolist() == [3, 1]
    feats = from_encoded([torch.ones(4, 3), torch.ones(2, 3)], [[8], [8]]).collate([0, 1], 0, 2, 3)
    assert feats.src.shape == (2, 4, 3) and feats.src[1, 2:].abs().sum() == 0


def test_translation_task_reads_every_format(tmp_path, registry):
    write(tmp_path / "txt" / "train.de", "Hallo Welt\nGuten Tag\n")
    write(tmp_path / "txt" / "train.en", "Hello world\nGood day\n")
    write(tmp_path / "txt" / "test2016.de", "Danke\n")
    write(tmp_path / "txt" / "test2016.en", "Thanks\n")
    r = load_recipe({"task": "translation", "data": {"dir": str(tmp_path / "txt"), "source": "en", "target": "de",
                                                      "splits": {"test": "test2016"}}})
    task = build_task(r, registry)
    assert [(e.source, e.target) for e in task.examples("train")] == [("Hello world", "Hallo Welt"), ("Good day", "Guten Tag")]
    assert task.examples("test")[0].target == "Danke"
    write(tmp_path / "tsv" / "train.tsv", "de\ten\nHallo\tHello\n")
    r = load_recipe({"task": "translation", "data": {"dir": str(tmp_path / "tsv"), "source": "de", "target": "en",
                                                      "format": "tsv"}})
    assert build_task(r, registry).examples("train")[0] == Example("Hallo", "Hello", id="train.tsv:2")
    write(tmp_path / "js" / "train.jsonl", '{"de": "Ja", "en": "Yes"}\n{"de": "Nein"}\n')
    r = load_recipe({"task": "translation", "data": {"dir": str(tmp_path / "js"), "source": "de", "target": "en",
                                                      "format": "jsonl"}})
    with pytest.raises(DataError, match=r"train.jsonl:2: missing field\(s\) \['en'\]"):
        build_task(r, registry).examples("train")


def test_dates_task_is_deterministic_and_splits_are_disjoint(registry):
    r = load_recipe({"task": "dates", "data": {"train_size": 3000, "test_size": 300}})
    a, b = build_task(r, registry), build_task(r, registry)
    assert a.examples("test") == b.examples("test")
    train_dates = {e.target for e in a.examples("train")}
    assert not train_dates & {e.target for e in a.examples("test")}
    other = build_task(load_recipe({"task": "dates", "seed": 2}), registry)
    assert other.examples("valid") != a.examples("valid")


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 22])
def test_lines_read_in_blocks_equal_lines_read_one_by_one(tmp_path, monkeypatch, block):
    """Blocks of any size give each line, its number and each undecodable line's report as
    reading the file line by line does (line ends \\n, \\r\\n, none at the end)."""
    import io
    import random
    from t2t import data
    from t2t.data import Problems, read_lines
    monkeypatch.setattr(data, "READ_BLOCK", block)
    rng = random.Random(block)
    for trial in range(40):
        parts = [rng.choice([b"\xff\xfe bad", "ünï\r".encode(), b"", b"x" * rng.randint(1, 30)])
                 for _ in range(rng.randint(0, 25))]
        raw = b"\n".join(parts) + rng.choice([b"", b"\n", b"\r\n"])
        path = tmp_path / f"{trial}.txt"
        path.write_bytes(raw)
        expected, reports = [], []
        for lineno, line in enumerate(io.BytesIO(raw), 1):          # how a file iterates: lines end at \n
            try:
                expected.append((lineno, line.decode().rstrip("\r\n")))
            except UnicodeDecodeError as e:
                expected.append((lineno, None))
                reports.append(f"{path}:{lineno}: not valid UTF-8 (byte {e.start} of the line)")
        problems = Problems("skip")
        assert list(read_lines(path, problems)) == expected
        assert problems.first == reports[:5] and problems.count == len(reports)


ROWS = [{"de": "Hallo, Welt", "en": 'He said "hello"'}, {"de": "Zeile\nzwei", "en": "line two"},
        {"de": "Ümlaut ß", "en": "tab\there"}, {"de": "Tschüss", "en": "Bye"}]


def _write_formats(folder, rows, split="train"):
    """One split of `rows` as TSV (tabs and line breaks made spaces: TSV cannot hold them), CSV and
    Parquet; the CSV and Parquet hold the rows exactly."""
    import csv

    flat = [{k: " ".join(v.split()) for k, v in r.items()} for r in rows]
    write(folder / "tsv" / f"{split}.tsv", "de\ten\n" + "".join(f"{r['de']}\t{r['en']}\n" for r in flat))
    (folder / "csv").mkdir(parents=True, exist_ok=True)
    with open(folder / "csv" / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "de", "en"])
        w.writeheader()
        w.writerows({"id": i, **r} for i, r in enumerate(rows))
    pa = pytest.importorskip("pyarrow", reason="pyarrow (t2t[parquet]) is not installed")
    import pyarrow.parquet as pq
    (folder / "parquet").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": list(range(len(rows))), "de": [r["de"] for r in rows],
                             "en": [r["en"] for r in rows]}), folder / "parquet" / f"{split}.parquet",
                   row_group_size=3)
    return flat


@pytest.mark.parametrize("task", ["translation", "summarization"])
def test_csv_and_parquet_give_the_examples_of_the_tsv(tmp_path, registry, task):
    _write_formats(tmp_path, ROWS)
    got = {}
    for fmt in ("tsv", "csv", "parquet"):
        data = {"dir": str(tmp_path / fmt), "source": "de", "target": "en", "format": fmt}
        if task == "summarization":
            data["newline"] = " "
        examples = build_task(load_recipe({"task": task, "data": data}), registry).examples("train")
        got[fmt] = [(" ".join(e.source.split()), " ".join(e.target.split())) for e in examples]
    assert got["csv"] == got["tsv"] == got["parquet"] and len(got["tsv"]) == 4
    by_id = build_task(load_recipe({"task": "translation", "data": {"dir": str(tmp_path / "parquet"), "source": "de",
                                                                     "target": "en", "format": "parquet"}}),
                       registry).examples("train")
    assert by_id[1].source == "Zeile\nzwei" and by_id[1].id == "train.parquet:row 2"
    csv_rows = build_task(load_recipe({"task": "translation", "data": {"dir": str(tmp_path / "csv"), "source": "de",
                                                                        "target": "en", "format": "csv"}}),
                          registry).examples("train")
    assert csv_rows[0].source == "Hallo, Welt" and csv_rows[2].id == "train.csv:5"     # the row before spans two lines


def test_broken_csv_and_parquet_files_are_named(tmp_path, registry):
    pytest.importorskip("pyarrow", reason="pyarrow (t2t[parquet]) is not installed")
    _write_formats(tmp_path, ROWS)

    def examples(fmt, **data):
        recipe = {"task": "translation", "data": {"dir": str(tmp_path / fmt), "source": "de", "target": "en",
                                                  "format": fmt, **data}}
        return build_task(load_recipe(recipe), registry).examples("train")

    write(tmp_path / "csv" / "train.csv", "de,en\nHallo,Hello\nnur eins\n")
    with pytest.raises(DataError, match=r"train.csv:3: 1 fields, but the header has 2"):
        examples("csv")
    assert [e.source for e in examples("csv", on_error="skip")] == ["Hallo"]
    write(tmp_path / "csv" / "train.csv", "fr,en\nSalut,Hi\n")
    with pytest.raises(DataError, match=r"train.csv: no column 'de'; the header has \['fr', 'en'\]"):
        examples("csv")
    path = tmp_path / "parquet" / "train.parquet"
    with pytest.raises(DataError, match=r"train.parquet: no column 'xx'; the file has \['id', 'de', 'en'\]"):
        examples("parquet", target="xx")
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(DataError, match=r"train.parquet: not a readable Parquet file"):
        examples("parquet")
