"""The plugin authoring kit: every code block of docs/plugins.md runs; scaffolded packages install,
show up in `t2t plugins`, and pass their own tests."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import environment, run_doc_blocks
from t2t.hookspecs import reference_markdown
from t2t.scaffold import KINDS, new_plugin

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"


def test_hook_reference_matches_the_hookspecs():
    text = DOC.read_text(encoding="utf-8")
    section = text.split("<!-- hooks:start -->\n")[1].split("<!-- hooks:end -->")[0]
    assert section == reference_markdown(), "regenerate the hook reference of docs/plugins.md"


@pytest.mark.slow
def test_every_code_block_of_the_plugin_docs_runs(tmp_path):
    env = environment()
    try:
        assert run_doc_blocks(DOC, tmp_path, env) >= 8
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "t2t-plurals"], env=env,
                       capture_output=True)


@pytest.mark.slow
def test_new_plugin_of_every_kind_installs_lists_and_passes_its_tests(tmp_path):
    env = environment()
    names = {kind: f"demo{kind}" for kind in KINDS}
    for kind, name in names.items():
        new_plugin(name, kind, tmp_path)
    try:
        pip = [sys.executable, "-m", "pip", "install", "-q"] + [a for n in names.values() for a in ("-e", n)]
        done = subprocess.run(pip, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        listed = subprocess.run(["t2t", "plugins"], cwd=tmp_path, env=env, capture_output=True, text=True)
        for name in names.values():
            assert re.search(rf"^\s+{name}\s+t2t-{name}\b", listed.stdout, re.M), listed.stdout
        # every scaffolded test passes; the end-to-end recipe runs are the slow ones, so those of
        # the task (the kind `t2t new-plugin NAME` makes by default) stand for all
        tests = [f"{n}/tests" for n in names.values()]
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests,
                               "-k", "not end_to_end or demotask"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-4000:]
        assert f"{2 * len(KINDS) + 1} passed" in done.stdout, done.stdout[-2000:]
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", *(f"t2t-{n}" for n in names.values())],
                       env=env, capture_output=True)


def test_new_plugin_refuses_bad_names_and_existing_folders(tmp_path):
    from t2t.errors import T2TError
    with pytest.raises(T2TError, match="lower-case letters"):
        new_plugin("Bad-Name", "task", tmp_path)
    new_plugin("ok", "task", tmp_path)
    with pytest.raises(T2TError, match="already exists"):
        new_plugin("ok", "task", tmp_path)
