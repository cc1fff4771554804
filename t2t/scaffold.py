"""`t2t new-plugin NAME --kind task|tokenizer|metric|model`: an installable plugin package with a
passing test, a recipe and a README, ready for `pip install -e NAME`."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from t2t.errors import T2TError

KINDS = ("task", "tokenizer", "metric", "model")

PYPROJECT = '''[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "t2t-{name}"
version = "0.1.0"
description = "A t2t plugin: {kind} '{name}'."
requires-python = ">=3.10"
dependencies = ["t2t"]

[project.entry-points.t2t]
{name} = "{module}"

[tool.setuptools]
packages = ["{module}"]

[tool.setuptools.package-data]
{module} = ["data/*.tsv"]
'''

TASK = '''"""t2t plugin: the task '{name}' reads tab-separated (source, target) pairs, `{{split}}.tsv`.

Without `data.dir` it reads the small sample that ships in this package (`{module}/data`).
"""

from pathlib import Path

import t2t
from t2t.data import read_tsv

SAMPLE = Path(__file__).parent / "data"


class {cls}(t2t.Task):
    """Source -> target pairs from {{split}}.tsv files (columns: source, target)."""

    name = "{name}"
    default_metrics = ("exact_match", "chrf")

    def read(self, split):
        folder = self.data_dir or SAMPLE
        for lineno, row in read_tsv(folder / f"{{split}}.tsv", self.problems):
            yield t2t.Example(row["source"], row["target"], id=f"{{split}}:{{lineno}}")


@t2t.hookimpl
def t2t_register_tasks(register):
    register({cls})
'''

TOKENIZER = '''"""t2t plugin: the tokenizer '{name}' splits words and punctuation apart."""

import re
from collections import Counter

import t2t
from t2t.vocab import Vocab

PIECE = re.compile(r"\\w+|[^\\w\\s]")


class {cls}(t2t.Tokenizer):
    """Words and punctuation marks as tokens; decoding joins them with spaces."""

    name = "{name}"

    def train(self, texts):
        self.vocab = Vocab.build(Counter(p for t in texts for p in self.tokenize(self.normalize(t))),
                                 symbols=self.symbols)

    def tokenize(self, text):
        return PIECE.findall(text)

    def detokenize(self, pieces):
        return " ".join(pieces)


@t2t.hookimpl
def t2t_register_tokenizers(register):
    register({cls})
'''

METRIC = '''"""t2t plugin: the metric '{name}': hypothesis length over reference length, in percent."""

import numpy as np

import t2t


class {cls}(t2t.Metric):
    """Total hypothesis words / total words of the shortest references, in percent."""

    name = "{name}"

    def sentence_stats(self, hyps, refs):
        return np.array([[len(h.split()), min(len(r.split()) for r in rs)] for h, rs in zip(hyps, refs)],
                        dtype=float)

    def score_stats(self, stats):
        return 100.0 * stats[0] / max(stats[1], 1.0)


@t2t.hookimpl
def t2t_register_metrics(register):
    register({cls})
'''

MODEL = '''"""t2t plugin: the architecture '{name}', a narrow deep Transformer built on t2t's own."""

import dataclasses

import t2t
from t2t.models.transformer import Transformer, TransformerOptions


@dataclasses.dataclass(frozen=True, kw_only=True)
class {cls}Options(TransformerOptions):
    arch: str = "{name}"
    dim: int = t2t.option(128, min=8, help="model dimension")
    layers: int = t2t.option(6, min=1, help="layers per side")
    heads: int = t2t.option(4, min=1, help="attention heads")
    ff_dim: int = t2t.option(512, min=1, help="feed-forward size")


class {cls}(Transformer):
    """A Transformer with narrow, deep defaults."""

    name = "{name}"
    Options = {cls}Options


@t2t.hookimpl
def t2t_register_models(register):
    register({cls})
'''

TEST = '''"""Tests of the plugin '{name}', through its installed entry point."""

from pathlib import Path

from t2t.testing import check_task, tiny_run

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "{name}.yaml"


def test_registered_by_this_package(t2t_registry):
    assert t2t_registry.entries("{kinds}")["{name}"].package == "t2t-{name}"
{extra}

def test_recipe_runs_end_to_end(t2t_registry, tmp_path):
    result = tiny_run(RECIPE, tmp_path, steps=10)
    assert result["report"]["metrics"]
    assert len(result["outputs"]) == 3
'''

EXTRA = {
    "task": '''

def test_every_split_is_well_formed(t2t_registry):
    counts = check_task("{name}")
    assert counts["train"] > 0 and counts["test"] > 0
''',
    "tokenizer": '''

def test_round_trip(t2t_registry):
    from t2t.recipe import load_recipe
    cls = t2t_registry.get("tokenizers", "{name}")
    tok = cls(load_recipe({{"task": "reverse", "tokenizer": {{"name": "{name}"}}}}).tokenizer)
    tok.train(["Hello, world!", "a b c"])
    assert tok.decode(tok.encode("Hello, world!")) == "Hello , world !"
''',
    "metric": '''

def test_values(t2t_registry):
    metric = t2t_registry.get("metrics", "{name}")()
    assert metric.compute(["a b", "c d e f"], [["a b c d"], ["c d"]]).value == 100.0
''',
    "model": '''

def test_interface(t2t_registry):
    import torch
    from t2t.models.base import ModelSpec
    from t2t.recipe import load_recipe
    recipe = load_recipe({{"task": "reverse", "model": {{"arch": "{name}", "dim": 16, "ff_dim": 32, "heads": 2,
                                                     "layers": 1}}}})
    model = t2t_registry.get("models", "{name}")(recipe.model, ModelSpec(10, 10)).eval()
    logits = model(torch.tensor([[4, 5, 6]]), torch.tensor([3]), torch.tensor([[2, 7]]))
    assert logits.shape == (1, 2, 10)
''',
}

RECIPES = {
    "task": "task: {name}\ntokenizer: {{name: char}}\nmodel: {{arch: rnn, embed_dim: 64, hidden_dim: 128}}\n"
            "train: {{max_epochs: 30, max_tokens: 1000, lr: 3.0e-3}}\nmetrics: [exact_match, chrf]\n"
            "output_dir: runs/{name}\n",
    "tokenizer": "task: reverse\ntokenizer: {{name: {name}}}\nmodel: {{arch: rnn}}\nmetrics: [exact_match]\n"
                 "output_dir: runs/{name}\n",
    "metric": "task: reverse\ntokenizer: {{name: char}}\nmodel: {{arch: rnn}}\nmetrics: [{name}, exact_match]\n"
              "output_dir: runs/{name}\n",
    "model": "task: reverse\ntokenizer: {{name: char}}\nmodel: {{arch: {name}}}\nmetrics: [exact_match]\n"
             "output_dir: runs/{name}\n",
}

README = '''# t2t-{name}

A t2t plugin adding the {kind} `{name}`, announced through the `t2t` entry-point group in
`pyproject.toml`.

```bash
pip install -e {name}                 # from the folder that holds this package
t2t plugins                           # lists '{name}' from package t2t-{name}
python -m pytest {name}/tests         # the plugin's own tests
t2t run {name}/recipes/{name}.yaml    # train and evaluate the example recipe
```

The code is in `{module}/__init__.py`; the hooks a plugin can implement are described in t2t's
`docs/plugins.md`.
'''

SAMPLE_ROWS = [("cat", "CAT"), ("dog", "DOG"), ("bird", "BIRD"), ("fish", "FISH"), ("horse", "HORSE"),
               ("mouse", "MOUSE"), ("lion", "LION"), ("tiger", "TIGER"), ("bear", "BEAR"), ("wolf", "WOLF")]


def new_plugin(name: str, kind: str = "task", directory: str | Path = ".") -> Path:
    """Write the package `directory/name`; returns its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise T2TError(f"plugin name '{name}': use lower-case letters, digits and underscores, starting with a letter")
    if kind not in KINDS:
        raise T2TError(f"--kind {kind}: unknown; choose one of {', '.join(KINDS)}")
    root = Path(directory) / name
    if root.exists():
        raise T2TError(f"{root} already exists; choose another name or folder")
    module = f"t2t_{name}"
    cls = "".join(part.capitalize() for part in name.split("_")) or "Plugin"
    fields = {"name": name, "module": module, "cls": cls, "kind": kind, "kinds": kind + "s"}
    code = {"task": TASK, "tokenizer": TOKENIZER, "metric": METRIC, "model": MODEL}[kind]
    files = {
        "pyproject.toml": PYPROJECT.format(**fields),
        f"{module}/__init__.py": code.format(**fields),
        f"tests/test_{name}.py": TEST.format(extra=EXTRA[kind].format(**fields), **fields),
        f"recipes/{name}.yaml": RECIPES[kind].format(**fields),
        "README.md": README.format(**fields),
    }
    if kind == "task":
        for split, rows in (("train", SAMPLE_ROWS * 20), ("valid", SAMPLE_ROWS[:5]), ("test", SAMPLE_ROWS[5:])):
            files[f"{module}/data/{split}.tsv"] = "source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in rows)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
