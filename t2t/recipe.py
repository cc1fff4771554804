"""Recipes: YAML -> typed, validated, frozen dataclasses.

The YAML is composed into nodes (never constructed into objects), so every value keeps its line
and its raw text. Values are coerced by the declared type of the field they fill: a language code
`no` stays the string "no", `1e-3` becomes the float 0.001 where a float is wanted, and `010` stays
"010" for a string and 10 for an int. All problems are collected and reported together, each as
`file:line key.path: what; hint`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from t2t import pretrained
from t2t.errors import RecipeError, T2TError, did_you_mean
from t2t.options import (DataOptions, DecodeOptions, LoggerOptions, MetricOptions, ModelOptions, OptionError,
                         TokenizerOptions, TrainOptions, fields_of, range_problem, to_plain)
from t2t.registry import KINDS, get_registry

# the tokenizer `name:` and model `arch:` a recipe gets without naming one (and no pretrained folder)
DEFAULT_PLUGINS = {"tokenizer": "char", "model": "rnn"}
SECTIONS = ("task", "data", "tokenizer", "model", "train", "decode", "metrics", "loggers", "seed", "output_dir")
_STD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq",
                                                   "merge", "timestamp")}
_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}
_INT = re.compile(r"[-+]?[0-9][0-9_]*$")


@dataclass(frozen=True)
class MetricSpec:
    """One entry of `metrics:`: the plugin name and its validated options."""

    name: str
    options: MetricOptions


@dataclass(frozen=True)
class LoggerSpec:
    """One entry of `loggers:`: the plugin name and its validated options."""

    name: str
    options: LoggerOptions


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. Sections are the plugins' own option dataclasses."""

    task: str
    data: DataOptions
    tokenizer: TokenizerOptions
    model: ModelOptions
    train: TrainOptions
    decode: DecodeOptions
    metrics: tuple[MetricSpec, ...]
    loggers: tuple[LoggerSpec, ...] = ()
    seed: int = 1
    output_dir: str = "runs/default"
    path: str | None = None           # the file it came from, for messages

    def to_dict(self) -> dict:
        """Plain nested dict of every key, defaults included (what a run saves)."""
        out = {"task": self.task}
        for key in ("data", "tokenizer", "model", "train", "decode"):
            out[key] = to_plain(getattr(self, key))
        out["metrics"] = [to_plain(m.options) for m in self.metrics]
        if self.loggers:                   # (left out when there are none: saved recipes stay as they were)
            out["loggers"] = [to_plain(lg.options) for lg in self.loggers]
        out["seed"], out["output_dir"] = self.seed, self.output_dir
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def replace(self, **sections: Any) -> "Recipe":
        return dataclasses.replace(self, **sections)


# --------------------------------------------------------------------------- loading


def load_recipe(source: str | os.PathLike | dict, overrides: Sequence[str] = (), registry=None) -> Recipe:
    """Read, override and validate a recipe; raise RecipeError listing every problem.

    `source` is a YAML file path, YAML text (containing a newline), or a plain dict.
    `overrides` are `key.path=value` strings (value in YAML syntax).
    """
    where, root = _compose(source)
    for text in overrides:
        _apply_override(root, text)
    return _validate(where, root, registry)


def _validate(where: str, root: yaml.Node, registry, read_pretrained: bool = True) -> Recipe:
    try:
        return _Validator(where, registry, read_pretrained).recipe(root)
    except RecursionError:
        raise RecipeError(f"{where}: the recipe refers to itself (a YAML alias inside its own anchor)") from None


def recipe_from_text(text: str, registry=None, where: str = "<checkpoint>") -> Recipe:
    """A recipe saved inside a run or checkpoint (plain YAML text). It holds every key, so a
    pretrained folder it names is not read again (the run carries what came from it)."""
    return _validate(where, _compose_text(text, where), registry, read_pretrained=False)


def _compose(source) -> tuple[str, yaml.Node]:
    if isinstance(source, dict):
        text = yaml.safe_dump(source, sort_keys=False, allow_unicode=True)
        return "<dict>", _compose_text(text, "<dict>")
    if isinstance(source, str) and "\n" in source:
        return "<text>", _compose_text(source, "<text>")
    path = Path(source)
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"{where}: no such recipe file") from None
    except OSError as e:
        raise RecipeError(f"{where}: cannot read the recipe ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RecipeError(f"{where}:{line}: the recipe is not valid UTF-8 (byte {e.start}); save it as UTF-8") from None
    return where, _compose_text(text, where)


def _compose_text(text: str, where: str) -> yaml.Node:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise RecipeError(f"{where}{line}: not valid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{where}: not valid YAML: {e}") from None
    if node is None:
        raise RecipeError(f"{where}: the recipe is empty; it needs at least `task:`")
    if not isinstance(node, yaml.MappingNode):
        raise RecipeError(f"{where}:{node.start_mark.line + 1}: a recipe is a mapping of sections "
                          f"({', '.join(SECTIONS)}), not a {_kind(node)}")
    return node


def _apply_override(root: yaml.MappingNode, text: str) -> None:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override '{text}': expected key.path=value, e.g. train.lr=1e-3")
    try:
        value_node = yaml.compose(value, Loader=yaml.SafeLoader) if value.strip() else None
    except yaml.YAMLError as e:
        raise RecipeError(f"override '{text}': the value is not valid YAML ({getattr(e, 'problem', e)})") from None
    if value_node is None:                              # empty, or only a comment
        value_node = yaml.ScalarNode("tag:yaml.org,2002:null", "")
    _mark(value_node, f"override '{text}'")
    node = root
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, yaml.MappingNode):
            raise RecipeError(f"override '{text}': {'.'.join(parts[:i])} is not a mapping")
        found = None
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == part:
                found = (k, v)
        if i == len(parts) - 1:
            if found:
                node.value.remove(found)
            node.value.append((_marked_scalar(part, f"override '{text}'"), value_node))
        elif found is None or not isinstance(found[1], yaml.MappingNode):
            child = yaml.MappingNode("tag:yaml.org,2002:map", [])
            _mark(child, f"override '{text}'")
            if found:
                node.value.remove(found)
            node.value.append((_marked_scalar(part, f"override '{text}'"), child))
            node = child
        else:
            node = found[1]


class _Mark:
    """A stand-in for yaml's Mark that names a command-line override instead of a line."""

    def __init__(self, where: str):
        self.where, self.line = where, None


def _mark(node: yaml.Node, where: str) -> None:
    node.start_mark = _Mark(where)
    for child in (node.value if isinstance(node.value, list) else []):
        for n in (child if isinstance(child, tuple) else (child,)):
            _mark(n, where)


def _marked_scalar(value: str, where: str) -> yaml.ScalarNode:
    node = yaml.ScalarNode("tag:yaml.org,2002:str", value)
    _mark(node, where)
    return node


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return f"value ({node.value!r})"


# --------------------------------------------------------------------------- validation


# model keys a recipe may set beside model.pretrained: they change training, not the architecture
PRETRAINED_FREE = ("pretrained", "dropout", "attention_dropout", "activation_dropout")


class _Validator:
    def __init__(self, where: str, registry, read_pretrained: bool = True):
        self.where = where
        self.registry = registry
        self.read_pretrained = read_pretrained
        self.errors: list[str] = []

    # -- reporting
    def at(self, node: yaml.Node | None) -> str:
        mark = getattr(node, "start_mark", None)
        if isinstance(mark, _Mark):
            return mark.where
        if mark is None:
            return self.where
        return f"{self.where}:{mark.line + 1}"

    def error(self, node, path: str, message: str) -> None:
        self.errors.append(f"{self.at(node)} {path}: {message}" if path else f"{self.at(node)}: {message}")

    # -- the whole recipe
    def recipe(self, root: yaml.MappingNode) -> Recipe:
        self.registry = get_registry(self.registry)
        sections = self.mapping_items(root, "")
        for key, (knode, _) in sections.items():
            if key not in SECTIONS:
                self.error(knode, key, f"unknown section; allowed: {', '.join(SECTIONS)}{did_you_mean(key, SECTIONS)}")
        # The task, tokenizer, model and metrics sections take their schemas from plugins.
        task_name, task_cls = self.plugin_name(sections, "task", "tasks", default=None)
        data_cls = getattr(task_cls, "Options", DataOptions) if task_cls else None
        pre = self.pretrained(sections)
        tok_cls = self.plugin_options(sections, "tokenizer", "name", "tokenizers", TokenizerOptions,
                                      pre.tokenizer["name"] if pre else DEFAULT_PLUGINS["tokenizer"])
        model_cls = self.plugin_options(sections, "model", "arch", "models", ModelOptions,
                                        "transformer" if self.find(sections, "model", "pretrained")
                                        else DEFAULT_PLUGINS["model"])
        given = {}                      # with a pretrained folder: its keys, and which a recipe may change
        if pre:
            given = {"tokenizer": (pre.tokenizer, pre.tokenizer_free), "model": (pre.model, PRETRAINED_FREE),
                     "decode": (pre.decode, tuple(DecodeOptions.__dataclass_fields__))}
            if pre.task and task_name and task_name != pre.task:
                self.error(sections["task"][1], "task", f"{task_name}: the pretrained folder is a {pre.model_type} "
                           f"model, which reads {pre.task}; set task: {pre.task}")
                data_cls = None
            elif pre.data and data_cls is not None:
                given["data"] = (pre.data, tuple(k for k in fields_of(data_cls) if k not in pre.data))

        data = self.section(sections, "data", data_cls, *given.get("data", ())) if data_cls else None
        tokenizer = self.section(sections, "tokenizer", tok_cls, *given.get("tokenizer", ())) if tok_cls else None
        model = self.section(sections, "model", model_cls, *given.get("model", ())) if model_cls else None
        train = self.section(sections, "train", TrainOptions)
        decode = self.section(sections, "decode", DecodeOptions, *given.get("decode", ()))
        if pre and pre.languages and tokenizer is not None and data is not None:
            # a translation's language codes are the model's where it knows them (M2M100: de, fr ...)
            chosen = {f"{side}_lang": getattr(data, side) for side in ("source", "target")
                      if not getattr(tokenizer, f"{side}_lang") and getattr(data, side, None) in pre.languages}
            tokenizer = dataclasses.replace(tokenizer, **chosen)
            for key in ("source_lang", "target_lang"):
                code = getattr(tokenizer, key)
                if code and code not in pre.languages:
                    self.error(self.find(sections, "tokenizer", key), f"tokenizer.{key}", f"unknown language "
                               f"{code!r}{did_you_mean(code, pre.languages)}; the model's {len(pre.languages)} "
                               f"languages: {', '.join(pre.languages)}")
        default_metrics = tuple(getattr(task_cls, "default_metrics", ())) if task_cls else ()
        metrics = tuple(MetricSpec(n, o) for n, o in self.plugin_list(sections.get("metrics"), default_metrics,
                                                                       "metrics", "metrics", MetricOptions))
        loggers = tuple(LoggerSpec(n, o) for n, o in self.plugin_list(sections.get("loggers"), (), "loggers",
                                                                       "loggers", LoggerOptions))
        seed = self.value(sections["seed"][1], "seed", int, (None, None)) if "seed" in sections else 1
        out = self.value(sections["output_dir"][1], "output_dir", str, (None, None)) \
            if "output_dir" in sections else f"runs/{task_name or 'default'}"
        if train is not None and train.valid_metric and metrics is not None:
            names = [m.name for m in metrics] + ["loss", "ppl"]
            if train.valid_metric not in names:
                node = self.find(sections, "train", "valid_metric")
                self.error(node, "train.valid_metric", f"'{train.valid_metric}' is not among the recipe's "
                           f"metrics; allowed: {', '.join(names)}{did_you_mean(train.valid_metric, names)}")
        if pre and pre.model_type in ("t5", "mt5"):         # T5's activations outgrow fp16's range
            for section, opts in (("train", train), ("decode", decode)):
                if opts is not None and opts.precision == "fp16":
                    self.error(self.find(sections, section, "precision"), f"{section}.precision",
                               "fp16: T5's activations overflow fp16 (the models were trained in bf16); use bf16 "
                               "or fp32")
        if train is not None and train.lora is not None and model is not None and not getattr(model, "pretrained", None):
            self.error(self.find(sections, "train", "lora"), "train.lora", "adapts a pretrained model's weights, "
                       "which this recipe has not; set model.pretrained to a pretrained folder")
        if decode is not None and model is not None and decode.ctc_weight and not getattr(model, "ctc_weight", 0.0):
            self.error(self.find(sections, "decode", "ctc_weight"), "decode.ctc_weight",
                       f"{decode.ctc_weight} needs a CTC head to score with; set model.ctc_weight > 0 "
                       "(e.g. 0.3) or decode.ctc_weight: 0")
        if self.errors:
            raise RecipeError("invalid recipe:\n  " + "\n  ".join(self.errors))
        return Recipe(task=task_name, data=data, tokenizer=tokenizer, model=model, train=train,
                      decode=decode, metrics=metrics, loggers=loggers, seed=seed, output_dir=out,
                      path=None if self.where.startswith("<") else self.where)

    def find(self, sections, section: str, key: str):
        if section not in sections or not isinstance(sections[section][1], yaml.MappingNode):
            return None
        for k, v in sections[section][1].value:
            if k.value == key:
                return v
        return None

    def mapping_items(self, node: yaml.MappingNode, path: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        try:
            yaml.constructor.SafeConstructor().flatten_mapping(node)  # resolve `<<:` merge keys
        except yaml.YAMLError as e:
            self.error(node, path, f"bad merge key: {getattr(e, 'problem', e)}")
            node.value = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            full = f"{path}.{key}" if path else str(key)
            if key is None:
                self.error(k, path, "keys must be plain names")
            elif key in items:
                self.error(k, full, f"given twice (first on line {self.at(items[key][0]).rsplit(':', 1)[-1]})")
            else:
                items[key] = (k, v)
        return items

    def plugin_name(self, sections, key: str, kind: str, default: str | None):
        if key not in sections:
            if default is None:
                self.error(None, key, f"missing; name one of the installed {kind}: "
                           f"{', '.join(self.registry.names(kind)) or '(none)'}")
                return None, None
            name, node = default, None
        else:
            node = sections[key][1]
            name = self.value(node, key, str, (None, None))
            if name is None:
                return None, None
        try:
            return name, self.registry.get(kind, name)
        except T2TError as e:
            self.error(node, key, str(e))
            return name, None

    def plugin_options(self, sections, section: str, key: str, kind: str, base: type, default: str):
        node = sections.get(section, (None, None))[1]
        name_node = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    name_node = v
        name = default if name_node is None else self.value(name_node, f"{section}.{key}", str, (None, None))
        if name is None:
            return None
        try:
            cls = self.registry.get(kind, name)
        except T2TError as e:
            self.error(name_node, f"{section}.{key}", str(e))
            return None
        return getattr(cls, "Options", base)

    def section(self, sections, key: str, cls: type, base: dict | None = None, free: Sequence[str] = ()):
        """A section's options; `base` (a pretrained folder's values) fills what the recipe leaves
        out, and the recipe may only change the `free` keys of it."""
        node = sections.get(key, (None, None))[1]
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value in _NULLS):
            node = yaml.MappingNode("tag:yaml.org,2002:map", [])
        return self.dataclass(node, key, cls, base, free)

    def pretrained(self, sections):
        """The description of the folder `model.pretrained` names (None without one, or when
        reading a saved recipe, which holds every key already)."""
        node = self.find(sections, "model", "pretrained")
        if node is None or not self.read_pretrained:
            return None
        path = self.value(node, "model.pretrained", str, (None, None))
        if path is _BAD:
            return None
        try:
            return pretrained.describe(path)
        except T2TError as e:
            self.error(node, "model.pretrained", str(e))
            return None

    def plugin_list(self, entry, defaults: tuple[str, ...], section: str, kind: str, base: type):
        """A list section of plugin entries (`metrics:`, `loggers:`): each a name or a mapping with
        `name` and the plugin's options; (name, options) pairs."""
        what = KINDS[kind][1]
        if entry is None:
            nodes = [yaml.ScalarNode("tag:yaml.org,2002:str", n) for n in defaults]
            knode = None
        else:
            knode, node = entry
            if isinstance(node, yaml.SequenceNode):
                nodes = node.value
            elif isinstance(node, yaml.ScalarNode) and node.value in _NULLS:
                nodes = []
            else:
                nodes = [node]
        out = []
        for i, node in enumerate(nodes):
            path = f"{section}[{i}]"
            if isinstance(node, yaml.ScalarNode):
                node = yaml.MappingNode("tag:yaml.org,2002:map", [
                    (yaml.ScalarNode("tag:yaml.org,2002:str", "name", node.start_mark), node)], node.start_mark)
            if not isinstance(node, yaml.MappingNode):
                self.error(node, path, f"a {what} is a name or a mapping with `name`")
                continue
            name_node = next((v for k, v in node.value if k.value == "name"), None)
            if name_node is None:
                self.error(node, path, "missing `name`")
                continue
            name = self.value(name_node, f"{path}.name", str, (None, None))
            try:
                cls = self.registry.get(kind, name)
            except T2TError as e:
                self.error(name_node, path, str(e))
                continue
            opts = self.dataclass(node, path, getattr(cls, "Options", base))
            if opts is not None:
                out.append((name, opts))
        names = [name for name, _ in out]
        for name in set(names):
            if names.count(name) > 1:
                self.error(knode, section, f"'{name}' is listed twice")
        return out

    def dataclass(self, node: yaml.Node, path: str, cls: type, base: dict | None = None, free: Sequence[str] = ()):
        if not isinstance(node, yaml.MappingNode):
            self.error(node, path, f"expected a mapping of keys ({', '.join(fields_of(cls))}), got a {_kind(node)}")
            return None
        fields = fields_of(cls)
        hints = typing.get_type_hints(cls)
        items = self.mapping_items(node, path)
        values = {}
        ok = True
        for key, (knode, vnode) in items.items():
            full = f"{path}.{key}"
            if key not in fields:
                self.error(knode, full, f"unknown key; allowed: {', '.join(fields)}{did_you_mean(key, fields)}")
                ok = False
                continue
            meta = fields[key].metadata
            value = self.value(vnode, full, hints[key], (meta.get("min"), meta.get("max")))
            if value is _BAD:
                ok = False
            elif base is not None and key not in free and value != base.get(key, fields[key].default):
                self.error(vnode, full, f"{_show(vnode)} contradicts the pretrained folder, which sets "
                           f"{base.get(key, fields[key].default)!r}; leave it out (a recipe may set "
                           f"{', '.join(free) or 'none of this section'} beside model.pretrained)")
                ok = False
            else:
                values[key] = value
        for key, f in fields.items():
            if key not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if key in items:
                    continue
                self.error(node, f"{path}.{key}", f"missing required key ({fields[key].metadata.get('help', '')})")
                ok = False
        if not ok:
            return None
        obj = cls(**{**(base or {}), **values})
        try:
            obj.check()
        except OptionError as e:
            at = items.get(e.key, (node, node))[1]
            self.error(at, f"{path}.{e.key}", e.message)
            return None
        return obj

    def value(self, node: yaml.Node, path: str, tp: Any, bounds):
        """Coerce one node to the declared type `tp`, or record an error and return _BAD."""
        if node.tag not in _STD_TAGS:
            self.error(node, path, f"YAML tag {node.tag} is not allowed in recipes")
            return _BAD
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if isinstance(node, yaml.ScalarNode) and node.value in _NULLS and node.style is None:
                return None
            return self.value(node, path, inner[0] if len(inner) == 1 else Any, bounds)
        if origin is Literal:
            raw = node.value if isinstance(node, yaml.ScalarNode) else None
            allowed = [str(a) for a in args]
            if raw not in allowed:
                self.error(node, path, f"{_show(node)} is not allowed; allowed: {', '.join(allowed)}"
                           f"{did_you_mean(raw, allowed) if raw else ''}")
                return _BAD
            return args[allowed.index(raw)]
        if origin in (tuple, list):
            items = node.value if isinstance(node, yaml.SequenceNode) else [node]
            if isinstance(node, yaml.MappingNode):
                self.error(node, path, "expected a list, got a mapping")
                return _BAD
            if origin is tuple and args and args[-1] is not Ellipsis and len(items) != len(args):
                self.error(node, path, f"expected {len(args)} values, got {len(items)}")
                return _BAD
            item_types = args[:-1] * len(items) if args and args[-1] is Ellipsis else (args or (Any,) * len(items))
            if origin is list:
                item_types = (args[0] if args else Any,) * len(items)
            out = [self.value(n, f"{path}[{i}]", t, bounds) for i, (n, t) in enumerate(zip(items, item_types))]
            return _BAD if any(v is _BAD for v in out) else tuple(out)
        if origin is dict:
            if not isinstance(node, yaml.MappingNode):
                self.error(node, path, f"expected a mapping, got a {_kind(node)}")
                return _BAD
            vt = args[1] if args else Any
            out = {k: self.value(v, f"{path}.{k}", vt, bounds)
                   for k, (_, v) in self.mapping_items(node, path).items()}
            return _BAD if any(v is _BAD for v in out.values()) else out
        if dataclasses.is_dataclass(tp):
            value = self.dataclass(node, path, tp)
            return _BAD if value is None else value
        if tp is Any:
            return _plain(node)
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, path, f"expected {_type_name(tp)}, got a {_kind(node)}")
            return _BAD
        raw, quoted = node.value, node.style is not None
        if tp is str:
            if raw in _NULLS and not quoted:
                self.error(node, path, "expected text, got nothing")
                return _BAD
            return raw
        if tp is bool:
            low = raw.lower()
            if not quoted and low in _TRUE | _FALSE:
                return low in _TRUE
            self.error(node, path, f"{_show(node)} is not a boolean; use true or false")
            return _BAD
        if tp is int:
            if quoted or not _INT.match(raw):
                self.error(node, path, f"{_show(node)} is not a whole number")
                return _BAD
            value = int(raw.replace("_", ""))
        elif tp is float:
            try:
                value = float(raw.replace("_", "")) if not quoted else None
            except ValueError:
                value = None
            if value is None or not math.isfinite(value):
                self.error(node, path, f"{_show(node)} is not a finite number")
                return _BAD
        else:
            return _plain(node)
        problem = range_problem(value, *bounds, shown=raw)
        if problem:
            self.error(node, path, problem)
            return _BAD
        return value


_BAD = object()


def _show(node: yaml.Node) -> str:
    return repr(node.value) if isinstance(node, yaml.ScalarNode) else f"a {_kind(node)}"


def _type_name(tp) -> str:
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _plain(node: yaml.Node) -> Any:
    """A node as plain Python data under YAML's safe rules (for untyped plugin options)."""
    if isinstance(node, yaml.MappingNode):
        return {k.value: _plain(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v) for v in node.value]
    if node.style is not None:
        return node.value
    return yaml.safe_load(node.value) if node.value else None
