"""The recipe JSON Schema (`t2t schema`) and `t2t recipe-keys`: generated from the option dataclasses,
so they follow them; every shipped recipe validates; misspelt keys and keys of another plugin fail."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from t2t.cli import main
from t2t.options import DecodeOptions, TrainOptions, fields_of
from t2t.schema import recipe_schema

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (a test dependency) is not installed")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*ROOT.glob("recipes/*.yaml"), *ROOT.glob("examples/*/*.yaml"), *ROOT.glob("examples/*/*/*.yaml")])


@pytest.fixture(scope="module")
def validator():
    schema = recipe_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_shipped_recipe_validates(validator):
    assert len(SHIPPED) >= 15
    for path in SHIPPED:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path.name, errors)


QUICK = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())


@pytest.mark.parametrize("change, wrong", [
    ({"trian": {}}, "a misspelt section"),
    ({"train": {"lrr": 1e-3}}, "a misspelt train key"),
    ({"decode": {"beem": 4}}, "a misspelt decode key"),
    ({"decode": {"beam": 0}}, "a value under its bound"),
    ({"decode": {"length_penalty": "long"}}, "a word for a number"),
    ({"data": {"source": "de"}}, "a translation key under the dates task"),
    ({"tokenizer": {"name": "char", "vocab_size": 8000}}, "a SentencePiece key under char"),
    ({"tokenizer": {"vocab_size": 8000}}, "a SentencePiece key under the default tokenizer"),
    ({"model": {"arch": "rnn", "heads": 4}}, "a Transformer key under rnn"),
    ({"model": {"heads": 4}}, "a Transformer key under the default arch"),
    ({"metrics": ["blue"]}, "an unknown metric"),
    ({"metrics": [{"name": "bleu", "tokenise": "13a"}]}, "a misspelt metric option"),
    ({"task": "translate"}, "an unknown task"),
    ({"loggers": ["mlfow"]}, "an unknown logger"),
    ({"loggers": [{"name": "wandb", "mod": "offline"}]}, "a misspelt logger option"),
    ({"model": {"pretrained": "opus-mt-de-en", "heads": 4}}, "a key a pretrained folder fixes"),
])
def test_wrong_keys_and_values_fail(validator, change, wrong):
    recipe = {**QUICK, **change}
    assert list(validator.iter_errors(recipe)), wrong


@pytest.mark.parametrize("change", [
    {"tokenizer": {"name": "sentencepiece", "vocab_size": 8000}},
    {"model": {"arch": "transformer", "heads": 4, "dim": 64}},
    {"task": "translation", "data": {"dir": "x", "source": "de", "target": "en"}},
    {"metrics": [{"name": "bleu", "tokenize": "13a"}, "chrf"]},
    {"model": {"pretrained": "opus-mt-de-en", "dropout": 0.2}, "tokenizer": {"target_lang": "de"}},
    {"train": {"lora": {"rank": 4, "targets": ["q", "v"]}, "freeze": ["encoder"]}},
    {"loggers": ["mlflow", {"name": "wandb", "mode": "offline"}]},
])
def test_keys_of_the_chosen_plugin_pass(validator, change):
    recipe = {**QUICK, **change}
    errors = [e.message for e in validator.iter_errors(recipe)]
    assert not errors, errors


def _object(schema, section, name=None):
    """The schema of `section` (under the condition for the plugin `name`, where given)."""
    if name is None:
        return schema["properties"][section]
    found = [c["then"]["properties"][section] for c in schema["allOf"] if c["$comment"] == f"{section}: {name}"]
    assert len(found) == 1, (section, name)
    return found[0]


def test_the_schema_is_the_options(registry):
    schema = recipe_schema(registry)
    for section, cls in (("train", TrainOptions), ("decode", DecodeOptions)):
        props = _object(schema, section)["properties"]
        assert set(props) == set(fields_of(cls)), section
        for key, f in fields_of(cls).items():
            assert props[key].get("description", "") == f.metadata.get("help", ""), key
            if f.default is not dataclasses.MISSING and isinstance(f.default, (int, float, str, bool)):
                assert props[key]["default"] == f.default, key
    for kind, section in (("tasks", "data"), ("tokenizers", "tokenizer"), ("models", "model")):
        for name in registry.names(kind):
            cls = registry.get(kind, name).Options
            if section == "tokenizer" and name in ("bart", "m2m100", "marian", "mbart50", "nllb", "t5", "whisper"):
                continue                                       # pretrained folders' own
            assert set(_object(schema, section, name)["properties"]) == set(fields_of(cls)), (section, name)
    beam = schema["properties"]["decode"]["properties"]["beam"]
    lo, hi = (fields_of(DecodeOptions)["beam"].metadata[k] for k in ("min", "max"))
    assert (beam.get("minimum"), beam.get("maximum")) == (lo, hi)


def test_the_commands_write_the_schema_and_print_the_keys(tmp_path, capsys):
    assert main(["schema", "--output", str(tmp_path / "recipe.schema.json")]) == 0
    written = json.loads((tmp_path / "recipe.schema.json").read_text())
    assert written == json.loads(json.dumps(recipe_schema()))
    assert main(["recipe-keys", "train"]) == 0
    out = capsys.readouterr().out
    assert all(f"train.{k} " in out for k in fields_of(TrainOptions)) and "train.lora.rank" in out
    assert main(["recipe-keys", "data", "translation"]) == 0
    out = capsys.readouterr().out
    assert "data (task: translation)" in out and "data.source " in out and "dates" not in out
    assert main(["recipe-keys", "data", "translate"]) == 1
    assert "no such task; installed: dates" in capsys.readouterr().err
