"""Translation, summarization and dialogue tasks on slices of the real corpora: reading, splitting,
truncation, references, baselines, and each recipe end to end with a tiny model."""

import json
import logging
from pathlib import Path

import yaml

import pytest

from helpers import write
from t2t.errors import DataError, RecipeError
from t2t.evaluation import evaluate
from t2t.assembly import build_task
from t2t.recipe import load_recipe
from t2t.testing import check_task, tiny_run

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SLICE = ["data.train_limit=200", "data.eval_limit=12", "tokenizer.vocab_size=300"]


def recipe(name, data_dir, *overrides):
    return load_recipe(RECIPES / name, [*SLICE, *overrides])


# every text recipe that reads a folder of the shared data (chitchat's package has its own test)
SHARED_TEXT_RECIPES = sorted(p.name for p in RECIPES.glob("*.yaml")
                             if (r := yaml.safe_load(p.read_text(encoding="utf-8")))["task"] in
                             ("translation", "summarization", "dialogue") and (r.get("data") or {}).get("dir"))


def test_the_shared_text_recipes_are_found():
    assert {"multi30k_de_en_rnn.yaml", "aeslc_transformer.yaml", "sgd_transformer.yaml"} <= set(SHARED_TEXT_RECIPES)


@pytest.mark.parametrize("name", SHARED_TEXT_RECIPES)
def test_recipe_runs_end_to_end_on_a_slice(name, shared_data, registry, tmp_path):
    result = tiny_run(RECIPES / name, tmp_path, SLICE, steps=4, data_dir=shared_data, registry=registry,
                      eval_limit=6)
    task = result["recipe"].task
    assert set(result["report"]["metrics"]) == {m.name for m in result["recipe"].metrics}
    assert result["report"]["sentences"] == 6 and len(result["outputs"]) == 3
    assert result["report"]["reference_ppl"] > 1.0
    assert task in ("translation", "summarization", "dialogue")


def test_multi30k_reads_aligned_pairs(shared_data, registry):
    r = recipe("multi30k_de_en_transformer.yaml", shared_data)
    task = build_task(r, registry, shared_data)
    test = task.examples("test")
    assert test[0].source.startswith("Ein Mann mit einem orangefarbenen Hut")
    assert test[0].target.startswith("A man in an orange hat")
    assert check_task("translation", r.to_dict()["data"], shared_data, registry=registry, limit=50) == \
        {"train": 50, "valid": 50, "test": 50}


def test_translation_length_and_ratio_filters(tmp_path, registry):
    write(tmp_path / "train.de", "ein kurzer satz\neins\nein viel zu langer satz mit sehr vielen worten\n")
    write(tmp_path / "train.en", "a short sentence\none two three four five six\nlong\n")
    r = load_recipe({"task": "translation", "data": {"dir": str(tmp_path), "source": "de", "target": "en",
                                                      "max_ratio": 3.0, "max_words": 8}})
    assert [e.source for e in build_task(r, registry).examples("train")] == ["ein kurzer satz"]


def test_aeslc_multi_reference_truncation_and_lead(shared_data, registry, tmp_path):
    r = recipe("aeslc_transformer.yaml", shared_data, "data.max_source_words=20")
    task = build_task(r, registry, shared_data)
    valid = task.examples("test")                                 # the data's valid file; valid is held-out training
    assert len(valid[0].refs) == 3 and valid[0].refs[1] == "meeting confirmation"
    assert all(len(ex.source.split()) <= 20 for ex in valid)
    train = task.examples("train")
    assert train[0].refs == (train[0].target,)
    lead = task.baseline("lead", valid[:1])[0]
    assert lead.startswith("Hi Phillip,") and lead.endswith("EB 3267.")          # the first sentence
    assert len(task.examples("valid")) == 12 and all(len(ex.refs) == 1 for ex in task.examples("valid"))
    report = evaluate(recipe=r, split="test", data_dir=shared_data, registry=registry, baselines=["lead"],
                      out_dir=tmp_path)
    rouge = report["baselines"]["lead"]["rouge"]
    assert 0 < rouge["value"] < 100 and "rouge2" in rouge["details"]
    assert (tmp_path / "test.lead.hyp").read_text().count("\n") == 12



def test_min_target_coverage_drops_unsupported_training_pairs_only(tmp_path, registry, caplog):
    """data.min_target_coverage: a training pair whose summary is mostly words its (cut) source
    lacks is dropped, counted in the log; the held-out and evaluation splits keep every example."""
    rows = [("Budget meeting moved to Friday at noon", "Budget meeting Friday"),      # 3 of 3 words
            ("Please send the draft contract today", "hi!"),                            # 0 of 1
            ("Lunch? | The new place on Main", "lunch at the place on 5th"),            # 4 of 6
            ("Quarterly numbers are attached below", "Q3 numbers")]                     # 1 of 2
    lines = "".join(json.dumps({"id": f"e{i}", "document": d, "summary": s}) + "\n" for i, (d, s) in enumerate(rows))
    write(tmp_path / "train.jsonl", lines)
    write(tmp_path / "test.jsonl", lines)

    def ids(split, floor, **more):
        r = load_recipe({"task": "summarization", "data": {"dir": str(tmp_path), "min_target_coverage": floor, **more}})
        return [e.id for e in build_task(r, registry).examples(split)]

    assert ids("train", 0.0) == ["e0", "e1", "e2", "e3"]
    assert ids("train", 0.5) == ["e0", "e2", "e3"]
    assert ids("train", 0.6) == ["e0", "e2"]
    with caplog.at_level(logging.INFO, logger="t2t"):
        assert ids("train", 0.7) == ["e0"]
    assert "kept 1 of 4 training pairs (3 targets mostly not in their source)" in caplog.text
    assert ids("test", 0.7) == ["e0", "e1", "e2", "e3"]
    assert ids("train", 0.6, max_source_words=2) == ["e0"]        # measured against the source the model reads
    assert len(ids("valid", 0.7, valid_from_train=2)) == 2
    with pytest.raises(DataError, match="min_target_coverage: 1.0 drops every one of the 4 training pairs"):
        ids("train", 1.0, max_source_words=2)

def test_samsum_json_array_longest_baseline_and_empty_dialogue(shared_data, registry):
    r = recipe("samsum_transformer.yaml", shared_data, "data.train_limit=20000")
    task = build_task(r, registry, shared_data)
    train = task.examples("train")
    assert len(train) == 14731 - 500 and task.problems.count == 1    # the one empty dialogue is skipped
    assert len(task.examples("valid")) == 12 and task.problems.count == 1    # (eval_limit) ... counted once
    assert " | " in train[0].source
    valid = task.examples("test")
    longest = task.baseline("longest", valid[:1])[0]
    lines = [" ".join(line.split()) for line in valid[0].raw.splitlines() if line.strip()]
    top3 = sorted(sorted(range(len(lines)), key=lambda i: -len(lines[i]))[:3])       # the 3 longest, in order
    assert longest == " ".join(lines[i] for i in top3)


def test_dialogsum_test_split_has_three_references(shared_data, registry):
    task = build_task(recipe("dialogsum_transformer.yaml", shared_data), registry, shared_data)
    assert len(task.examples("test")[0].refs) == 3
    assert len(task.examples("valid")[0].refs) == 1


def test_dialogue_contexts_speakers_and_split_by_conversation(shared_data, registry):
    sgd = build_task(recipe("sgd_transformer.yaml", shared_data), registry, shared_data)
    first = sgd.examples("train")[0]
    assert first.id == "1_00000:1" and first.source.startswith("USER: I am feeling hungry")
    rows = [json.loads(line) for line in (shared_data / "sgd" / "train.jsonl").open().readlines()[:1]]
    assert first.target == rows[0]["turns"][1] and rows[0]["speakers"][1] == "SYSTEM"
    assert all(int(ex.id.split(":")[1]) % 2 == 1 for ex in sgd.examples("train"))  # only SYSTEM turns
    daily = build_task(recipe("dailydialog_transformer.yaml", shared_data, "data.history=2"), registry, shared_data)
    ex = daily.examples("train")[2]
    assert ex.source.count("<sep>") == 1                                      # two previous turns
    train_ids = {e.id.split(":")[0] for e in daily.examples("train")}
    valid_ids = {e.id.split(":")[0] for e in daily.examples("valid")}
    assert not train_ids & valid_ids


def test_dialogue_retrieval_baseline_returns_training_responses(shared_data, registry, tmp_path):
    r = recipe("dailydialog_transformer.yaml", shared_data, "data.train_limit=500")
    report = evaluate(recipe=r, split="valid", data_dir=shared_data, registry=registry, baselines=["retrieval"],
                      out_dir=tmp_path)
    task = build_task(r, registry, shared_data)
    responses = {ex.target for ex in task.examples("train")}
    hyps = (tmp_path / "valid.retrieval.hyp").read_text().splitlines()
    assert len(hyps) == 12 and all(h in responses for h in hyps)
    assert set(report["baselines"]["retrieval"]) >= {"bleu", "distinct_n", "avg_words"}


def test_retrieval_finds_the_identical_context(registry):
    from t2t_plugins.dialogue import TfidfIndex
    index = TfidfIndex(["how are you today", "what time is the train", "do you like jazz music"],
                       ["fine thanks", "at noon", "yes a lot"])
    assert index.nearest(["when does the train leave, what time", "jazz music is great"]) == ["at noon", "yes a lot"]


def test_chitchat_conversations_from_the_optional_package(registry):
    pytest.importorskip("chitchat_dataset", reason="optional: pip install -e .[dialogue]")
    r = load_recipe(RECIPES / "chitchat_transformer.yaml", ["data.train_limit=300", "data.eval_limit=50"])
    task = build_task(r, registry)
    train, test = task.examples("train"), task.examples("test")
    assert len(train) == 300 and len(test) == 50
    assert not {e.id.split(":")[0] for e in train} & {e.id.split(":")[0] for e in test}
    assert "<sep>" in train[5].source or train[5].id.endswith(":1")


def test_valid_from_train_holds_examples_out_by_the_seed(tmp_path, registry):
    """data.valid_from_train: N training examples become the valid split (the data's own valid
    file, if any, is not read), disjoint from train, together all of it, the same for a seed."""
    write(tmp_path / "train.jsonl", "".join(json.dumps({"id": f"e{i}", "document": f"text {i}", "summary": f"s {i}"})
                                            + "\n" for i in range(30)))
    data = {"dir": str(tmp_path), "valid_from_train": 8}

    def split(seed, **more):
        task = build_task(load_recipe({"task": "summarization", "seed": seed, "data": {**data, **more}}), registry)
        return [e.id for e in task.examples("train")], [e.id for e in task.examples("valid")]

    train, valid = split(1)
    assert len(valid) == 8 and len(train) == 22 and sorted(train + valid) == sorted(f"e{i}" for i in range(30))
    assert split(1) == (train, valid) and split(2)[1] != valid
    assert train == [f"e{i}" for i in range(30) if f"e{i}" not in valid]        # file order kept
    assert split(1, train_limit=5)[0] == train[:5]
    with pytest.raises(DataError, match="valid_from_train: 30 would leave no training data .*30 examples"):
        split(1, valid_from_train=30)


def test_valid_from_train_holds_whole_conversations_out(tmp_path, registry):
    write(tmp_path / "train.jsonl", "".join(json.dumps({"id": f"c{i}", "turns": ["hi", "hello", "how are you", "fine"]})
                                            + "\n" for i in range(10)))
    task = build_task(load_recipe({"task": "dialogue", "data": {"dir": str(tmp_path), "valid_from_train": 3}}), registry)
    train, valid = task.examples("train"), task.examples("valid")
    assert len(valid) == 9 and len(train) == 21                             # 3 conversations of 3 responses
    assert not {e.id.split(":")[0] for e in train} & {e.id.split(":")[0] for e in valid}


def test_speech_refuses_valid_from_train():
    with pytest.raises(RecipeError, match=r"valid_from_train.*data.valid_speakers"):
        load_recipe({"task": "speech", "data": {"dir": "an4", "valid_from_train": 50}})
