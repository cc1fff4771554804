"""Malformed recipes of every kind end in t2t's own RecipeError, never a traceback or a started run."""

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t2t.cli import main
from t2t.errors import RecipeError
from t2t.recipe import SECTIONS, load_recipe
from t2t.registry import Registry
from t2t.testing import using_registry

REGISTRY = Registry.from_plugins()
BASE = {"task": "translation", "data": {"dir": "d", "source": "de", "target": "en"},
        "tokenizer": {"name": "sentencepiece", "vocab_size": 8000},
        "model": {"arch": "transformer", "dim": 64, "heads": 4, "layers": 2},
        "train": {"lr": 0.001, "max_epochs": 3, "schedule": "inverse_sqrt", "warmup": 100},
        "decode": {"beam": 4}, "metrics": ["bleu", {"name": "chrf", "word_order": 2}], "seed": 1}

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["no", "yes", "010", "1e-3", "~", "inverse_sqrt", "bleu", "rnn", ".inf"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=10)


def paths(recipe):
    for key, value in recipe.items():
        yield (key,)
        if isinstance(value, dict):
            for sub in value:
                yield (key, sub)


def outcome(source, overrides=()):
    """A valid Recipe or a RecipeError; anything else fails the test."""
    with using_registry(REGISTRY):
        try:
            return load_recipe(source, overrides, registry=REGISTRY)
        except RecipeError as e:
            assert str(e).strip(), "an error needs a message"
            return e


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_recipes(data, tmp_path_factory):
    recipe = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        path = data.draw(st.sampled_from(sorted(paths(recipe))))
        parent = recipe if len(path) == 1 else recipe.get(path[0])
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        if action == "replace":
            parent[path[-1]] = data.draw(values)
        elif action == "delete":
            del parent[path[-1]]
        else:
            parent[data.draw(st.text(min_size=1, max_size=10))] = data.draw(values)
    text = yaml.safe_dump(recipe, allow_unicode=True)
    path = tmp_path_factory.mktemp("r") / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    outcome(path)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("r") / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    outcome(path)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes(raw, tmp_path_factory):
    path = tmp_path_factory.mktemp("r") / "recipe.yaml"
    path.write_bytes(raw)
    outcome(path)


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from([f"{s}.x" for s in SECTIONS] + ["train.lr", "model.dim", "decode.beam", "metrics", "seed"]),
       value=st.text(max_size=30))
def test_arbitrary_overrides(key, value):
    outcome(BASE, [f"{key}={value}"])


def test_yaml_tags_never_construct_objects(tmp_path):
    flag = tmp_path / "owned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"task: !!python/object/apply:os.system ['touch {flag}']\n")
    assert isinstance(outcome(path), RecipeError)
    assert not flag.exists()


def test_a_bad_recipe_starts_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    bad = dict(BASE, output_dir=str(out), train={"lr": "fast"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with using_registry(REGISTRY):
        assert main(["train", str(path)]) == 1
    err = capsys.readouterr().err
    assert "train.lr: 'fast' is not a finite number" in err and "Traceback" not in err
    assert not out.exists()
