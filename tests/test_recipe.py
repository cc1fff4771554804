import pytest

from helpers import write
from t2t.errors import RecipeError
from t2t.recipe import load_recipe, recipe_from_text

GOOD = """\
task: translation
data:
  dir: multi30k
  source: de
  target: en
tokenizer: {name: word, min_freq: 2}
model:
  arch: transformer
  dim: 64
  heads: 4
train:
  lr: 5e-4
  max_epochs: 3
metrics: [bleu, chrf]
"""


def load_text(tmp_path, text, overrides=()):
    return load_recipe(write(tmp_path / "recipe.yaml", text), overrides)


def error_of(tmp_path, text, overrides=()):
    with pytest.raises(RecipeError) as e:
        load_text(tmp_path, text, overrides)
    return str(e.value)


def test_good_recipe_is_typed(tmp_path, registry):
    r = load_text(tmp_path, GOOD)
    assert r.task == "translation"
    assert r.data.source == "de" and r.data.target == "en"
    assert r.model.dim == 64 and r.model.heads == 4
    assert r.train.lr == pytest.approx(5e-4) and isinstance(r.train.lr, float)   # PyYAML reads 5e-4 as a string
    assert [m.name for m in r.metrics] == ["bleu", "chrf"]
    assert r.tokenizer.min_freq == 2


def test_unknown_key_names_key_line_allowed_and_suggestion(tmp_path, registry):
    msg = error_of(tmp_path, GOOD.replace("  max_epochs: 3", "  max_epoch: 3"))
    assert "recipe.yaml:13 train.max_epoch: unknown key" in msg
    assert "max_epochs" in msg and "did you mean 'max_epochs'" in msg


def test_wrong_type_and_range(tmp_path, registry):
    msg = error_of(tmp_path, GOOD.replace("dim: 64", "dim: sixty"))
    assert "recipe.yaml:9 model.dim: 'sixty' is not a whole number" in msg
    msg = error_of(tmp_path, GOOD.replace("max_epochs: 3", "max_epochs: 0"))
    assert "recipe.yaml:13 train.max_epochs: 0 is out of range; it must be at least 1" in msg


def test_choice_lists_allowed_values(tmp_path, registry):
    msg = error_of(tmp_path, GOOD.replace("  lr: 5e-4", "  schedule: invers_sqrt"))
    assert "train.schedule: 'invers_sqrt' is not allowed; allowed: constant, inverse_sqrt, cosine, linear, plateau" in msg
    assert "did you mean 'inverse_sqrt'" in msg


def test_cross_field_check_names_key_and_hint(tmp_path, registry):
    msg = error_of(tmp_path, GOOD.replace("heads: 4", "heads: 6"))
    assert "recipe.yaml:10 model.heads: 6 does not divide model.dim 64; use" in msg


def test_unknown_plugin_lists_installed(tmp_path, registry):
    msg = error_of(tmp_path, GOOD.replace("task: translation", "task: translaton"))
    assert "recipe.yaml:1 task: unknown task 'translaton'" in msg
    assert "installed tasks: dates, dialogue, reverse, speech, summarization, translation" in msg
    assert "did you mean 'translation'" in msg
    msg = error_of(tmp_path, GOOD.replace("metrics: [bleu, chrf]", "metrics: [bleu, rouge_l]"))
    assert "unknown metric 'rouge_l'" in msg


def test_all_errors_reported_together(tmp_path, registry):
    msg = error_of(tmp_path, GOOD.replace("dim: 64", "dim: -1").replace("max_epochs: 3", "max_epochs: x"))
    assert "model.dim" in msg and "train.max_epochs" in msg


def test_missing_required_key(tmp_path, registry):
    msg = error_of(tmp_path, GOOD.replace("  target: en\n", ""))
    assert "data.target: missing required key" in msg


def test_yaml_traps_coerced_by_declared_type(tmp_path, registry):
    # `no` (Norwegian) would be False and `010` would be 8 under YAML 1.1
    r = load_text(tmp_path, GOOD.replace("source: de", "source: no").replace("target: en", "target: 010"))
    assert r.data.source == "no" and r.data.target == "010"
    r = load_text(tmp_path, GOOD.replace("max_epochs: 3", "max_epochs: 010"))
    assert r.train.max_epochs == 10


def test_bad_yaml_empty_and_non_utf8(tmp_path, registry):
    assert "recipe.yaml:3: not valid YAML" in error_of(tmp_path, "task: dates\ndata: {a: 1\nmodel: x\n")
    assert "the recipe is empty" in error_of(tmp_path, "")
    assert "a recipe is a mapping" in error_of(tmp_path, "- just\n- a list\n")
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"task: dates\nseed: \xff\n")
    with pytest.raises(RecipeError, match=r"bad.yaml:2: the recipe is not valid UTF-8"):
        load_recipe(p)
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")


def test_no_object_construction(tmp_path, registry):
    msg = error_of(tmp_path, GOOD + "seed: !!python/object/apply:os.system ['echo hi']\n")
    assert "seed" in msg and "tag" in msg


def test_duplicate_key(tmp_path, registry):
    assert "train.lr: given twice" in error_of(tmp_path, GOOD.replace("  max_epochs: 3", "  lr: 1e-3"))


def test_overrides(tmp_path, registry):
    r = load_text(tmp_path, GOOD, ["train.lr=1e-3", "model.dim=128", "metrics=[chrf]", "data.source=fr"])
    assert r.train.lr == pytest.approx(1e-3) and r.model.dim == 128
    assert [m.name for m in r.metrics] == ["chrf"] and r.data.source == "fr"
    msg = error_of(tmp_path, GOOD, ["train.lrr=1e-3"])
    assert "override 'train.lrr=1e-3' train.lrr: unknown key" in msg and "did you mean 'lr'" in msg
    assert "expected key.path=value" in error_of(tmp_path, GOOD, ["train.lr"])


def test_defaults_come_from_the_task(tmp_path, registry):
    r = load_recipe({"task": "dates"})
    assert [m.name for m in r.metrics] == ["exact_match", "chrf"]
    assert r.model.arch == "rnn" and r.tokenizer.name == "char"


def test_saved_recipe_round_trips(tmp_path, registry):
    r = load_text(tmp_path, GOOD)
    again = recipe_from_text(r.to_yaml())
    assert again.to_dict() == r.to_dict()


def test_metric_options_validated(tmp_path, registry):
    r = load_recipe({"task": "dates", "metrics": [{"name": "bleu", "tokenize": "intl"}]})
    assert r.metrics[0].options.tokenize == "intl"
    with pytest.raises(RecipeError, match=r"metrics\[0\]\.tokenize: 'klingon' is not allowed"):
        load_recipe({"task": "dates", "metrics": [{"name": "bleu", "tokenize": "klingon"}]})


def test_valid_metric_must_be_listed(registry):
    with pytest.raises(RecipeError, match="train.valid_metric: 'bleu' is not among the recipe's metrics"):
        load_recipe({"task": "dates", "train": {"valid_metric": "bleu"}})


def test_joint_ctc_decoding_needs_a_ctc_head(tmp_path, registry):
    msg = error_of(tmp_path, GOOD + "decode: {beam: 4, ctc_weight: 0.3}\n")
    assert "recipe.yaml:15 decode.ctc_weight: 0.3 needs a CTC head to score with; set model.ctc_weight > 0" in msg
    assert load_text(tmp_path, GOOD + "decode: {beam: 4, ctc_weight: 0.3}\n", ["model.ctc_weight=0.3"]).decode.ctc_weight == 0.3
