import dataclasses
import types

import pytest

import t2t
from t2t.cli import main
from t2t.errors import PluginError
from t2t.registry import Registry
from t2t.testing import check_task, tiny_recipe, using_registry


class Shout(t2t.Task):
    """Lower-case words -> the same words upper-cased (a task defined inside a test)."""

    name = "shout"
    default_metrics = ("exact_match",)

    def read(self, split):
        words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
        n = {"train": 200, "valid": 16, "test": 16}[split]
        for i in range(n):
            w = words[(i * 7 + len(split)) % len(words)]
            yield t2t.Example(w, w.upper(), id=str(i))


def plugin(**hooks):
    """A plugin object with the given hook functions (as a third-party module would have)."""
    mod = types.ModuleType("test_plugin_" + "_".join(hooks))
    for name, fn in hooks.items():
        setattr(mod, name, t2t.hookimpl(fn))
    return mod


def test_entry_points_include_the_builtins():
    reg = Registry.from_entry_points()
    assert {"dates", "reverse", "translation"} <= set(reg.names("tasks"))
    assert {"char", "word", "sentencepiece"} <= set(reg.names("tokenizers"))
    assert {"bleu", "chrf", "exact_match"} <= set(reg.names("metrics"))
    assert {"rnn", "transformer"} <= set(reg.names("models"))
    assert reg.entries("tasks")["dates"].package == "t2t"


def test_block_list(monkeypatch):
    monkeypatch.setenv("T2T_BLOCK_PLUGINS", "translation")
    reg = Registry.from_entry_points()
    assert "translation" not in reg.names("tasks") and "dates" in reg.names("tasks")


def test_unknown_name_lists_installed_and_suggests(registry):
    with pytest.raises(PluginError) as e:
        registry.get("metrics", "blue")
    assert "unknown metric 'blue'" in str(e.value)
    assert "installed metrics: bleu, cer" in str(e.value) and "did you mean 'bleu'" in str(e.value)


def test_plugin_defined_in_a_test_is_listed_and_usable(tmp_path, capsys):
    mod = plugin(t2t_register_tasks=lambda register: register(Shout))
    with using_registry(Registry.from_plugins([mod])):
        assert main(["plugins"]) == 0
        out = capsys.readouterr().out
        assert "shout" in out and "upper-cased" in out
        assert check_task("shout") == {"train": 200, "valid": 16, "test": 16}
        recipe = tiny_recipe("shout", train={"max_epochs": 1}, output_dir=str(tmp_path / "run"),
                             data={})
        recipe_path = tmp_path / "shout.yaml"
        import yaml
        recipe_path.write_text(yaml.safe_dump(recipe))
        assert main(["--quiet", "train", str(recipe_path)]) == 0
        assert (tmp_path / "run" / "checkpoints" / "index.json").exists()


def test_plugin_options_are_validated_like_builtins():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Opts(t2t.DataOptions):
        size: int = t2t.option(10, min=1, help="how many")

    class Sized(Shout):
        name = "sized"
        Options = Opts
    mod = plugin(t2t_register_tasks=lambda register: register(Sized))
    with using_registry(Registry.from_plugins([mod])):
        assert t2t.load_recipe({"task": "sized", "data": {"size": 3}}).data.size == 3
        with pytest.raises(t2t.RecipeError, match="data.size: 0 is out of range"):
            t2t.load_recipe({"task": "sized", "data": {"size": 0}})


def test_cli_reports_errors_without_traceback(tmp_path, capsys, registry):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: datez\n")
    assert main(["train", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "t2t: error: invalid recipe" in err and "did you mean 'dates'" in err
    assert "Traceback" not in err
