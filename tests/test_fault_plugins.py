"""Broken plugins are reported by package name and the rest of t2t keeps working."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import t2t
from t2t.errors import PluginError
from t2t.registry import Registry
from test_registry import Shout, plugin


def fake_distribution(site: Path, package: str, module: str, code: str) -> None:
    """An installed distribution (dist-info with a `t2t` entry point) in a folder for PYTHONPATH."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{package.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[t2t]\n{module} = {module}\n")


def test_a_plugin_that_fails_to_import_is_named_and_the_rest_works(tmp_path):
    fake_distribution(tmp_path, "t2t-broken", "broken_plugin", "import a_module_that_is_not_installed\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([sys.executable, "-m", "t2t.cli", "plugins"], capture_output=True, text=True, env=env)
    assert done.returncode == 0
    assert "dates" in done.stdout and "transformer" in done.stdout
    assert "broken plugin broken_plugin (t2t-broken): failed to import broken_plugin: ModuleNotFoundError" in done.stderr
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: headlines\n")
    done = subprocess.run([sys.executable, "-m", "t2t.cli", "train", str(recipe)], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 1
    assert "unknown task 'headlines' (plugins that failed to load: t2t-broken; see `t2t plugins`)" in done.stderr


def test_clash_names_both_packages():
    a = plugin(t2t_register_tasks=lambda register: register(Shout))
    other = type("Shout2", (Shout,), {"__doc__": "another"})
    b = plugin(t2t_register_tasks=lambda register: register(other))
    reg = Registry.from_plugins(builtins=False)
    reg.register(a, name="first", package="pkg-one")
    reg.register(b, name="second", package="pkg-two")
    with pytest.raises(PluginError) as e:
        reg.get("tasks", "shout")
    assert "pkg-one" in str(e.value) and "pkg-two" in str(e.value)


def test_broken_plugins_are_reported_and_the_rest_works():
    not_a_class = plugin(t2t_register_tasks=lambda register: register("shout"))
    returns = plugin(t2t_register_metrics=lambda register: ["bleu"])
    nameless = plugin(t2t_register_tokenizers=lambda register: register(type("T", (t2t.Tokenizer,), {})))

    def raising(register):
        raise ImportError("no module named 'missing_dep'")
    raises = plugin(t2t_register_models=raising)
    reg = Registry.from_plugins(builtins=True)
    for i, p in enumerate((not_a_class, returns, nameless, raises)):
        reg.register(p, name=f"broken{i}", package=f"broken-pkg-{i}")
    assert "dates" in reg.names("tasks") and "bleu" in reg.names("metrics")
    messages = {f.package: f.message for f in reg.failures}
    assert "not a class" in messages["broken-pkg-0"]
    assert "returned list" in messages["broken-pkg-1"] and "call register" in messages["broken-pkg-1"]
    assert "has no `name`" in messages["broken-pkg-2"]
    assert "missing_dep" in messages["broken-pkg-3"]


def test_misspelt_hook_is_a_failure_naming_the_plugin():
    bad = plugin(t2t_register_task=lambda register: None)
    reg = Registry.from_plugins(builtins=False)
    assert not reg.register(bad, name="typo", package="typo-pkg")
    assert reg.failures[0].package == "typo-pkg"
    assert "t2t_register_task" in reg.failures[0].message and "t2t_register_tasks" in reg.failures[0].message
