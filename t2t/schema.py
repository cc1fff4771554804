"""Recipes described for editors and people: a JSON Schema generated from the option dataclasses of
the core and of the installed plugins (`t2t schema`), and the same keys as tables (`t2t recipe-keys`).

The schema says what can be known from a recipe alone: each key's type, bounds, allowed values,
default and help, the `data:` keys of the recipe's `task:`, the `tokenizer:` keys of its `name:`,
the `model:` keys of its `arch:` and the options of each metric. What a pretrained folder decides
(its tokenizer's keys, which model keys it leaves free) is known only when the folder is read:
there the schema allows what any pretrained family allows, and `t2t train` checks the rest.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal

from t2t import pretrained
from t2t.options import (DataOptions, DecodeOptions, LoggerOptions, MetricOptions, ModelOptions, TokenizerOptions, TrainOptions,
                         fields_of, to_plain)
from t2t.recipe import DEFAULT_PLUGINS, PRETRAINED_FREE, SECTIONS
from t2t.registry import get_registry

DRAFT = "https://json-schema.org/draft/2020-12/schema"
PLUGIN_SECTIONS = {"data": ("tasks", "task", DataOptions), "tokenizer": ("tokenizers", "name", TokenizerOptions),
                   "model": ("models", "arch", ModelOptions), "metrics": ("metrics", "name", MetricOptions),
                   "loggers": ("loggers", "name", LoggerOptions)}


def type_schema(tp: Any, lo: float | None = None, hi: float | None = None) -> dict:
    """The JSON Schema of one declared field type (as the recipe validator reads YAML into it)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        one = type_schema(inner[0], lo, hi) if len(inner) == 1 else {}
        return {"anyOf": [one, {"type": "null"}]} if type(None) in args else one
    if origin is Literal:
        return {"enum": list(args)}
    if origin is tuple and args and args[-1] is not Ellipsis:
        return {"type": "array", "prefixItems": [type_schema(a, lo, hi) for a in args], "items": False,
                "minItems": len(args)}
    if origin in (tuple, list):
        item = type_schema(args[0], lo, hi) if args else {}
        return {"anyOf": [{"type": "array", "items": item}, item]} if item else {"type": "array"}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1]) if len(args) > 1 else {}}
    if dataclasses.is_dataclass(tp):
        return options_schema(tp)
    kind = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(tp)
    if kind is None:
        return {}
    out: dict[str, Any] = {"type": kind}
    if kind in ("integer", "number"):
        if lo is not None:
            out["minimum"] = lo
        if hi is not None:
            out["maximum"] = hi
    return out


def options_schema(cls: type, only: tuple[str, ...] | None = None, name_key: str | None = None,
                   name: str | None = None) -> dict:
    """An options dataclass as a closed object: every field with its type, bounds, default and help.
    `name_key` (a section's plugin key, e.g. `arch`) is fixed to `name` where given."""
    hints = typing.get_type_hints(cls)
    props = {}
    for key, f in fields_of(cls).items():
        if only is not None and key not in only:
            continue
        prop = type_schema(hints[key], f.metadata.get("min"), f.metadata.get("max"))
        if f.metadata.get("help"):
            prop["description"] = f.metadata["help"]
        default = _default(f)
        if default is not dataclasses.MISSING:
            prop["default"] = default
        props[key] = prop
    if name_key and name is not None:
        props[name_key] = {**props.get(name_key, {}), "const": name}
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return dataclasses.MISSING
    value = to_plain(value)
    try:
        json.dumps(value)
    except TypeError:
        return dataclasses.MISSING
    return value


def _when(section: str, key: str, name: str, default: bool) -> dict:
    """The `if` of a conditional: `section.key` is `name` (or, for the default name, not given)."""
    named = {"properties": {section: {"properties": {key: {"const": name}}, "required": [key]}},
             "required": [section]}
    if not default:
        return named
    return {"anyOf": [named, {"not": {"required": [section]}},
                      {"properties": {section: {"not": {"required": [key]}}}, "required": [section]}]}


def recipe_schema(registry=None) -> dict:
    """The JSON Schema of a recipe with the installed plugins."""
    registry = get_registry(registry)
    tasks, models = registry.names("tasks"), registry.names("models")
    pretrained_model = {"properties": {"model": {"required": ["pretrained"]}}, "required": ["model"]}
    conditions: list[dict] = []
    for name in tasks:
        cls = getattr(registry.get("tasks", name), "Options", DataOptions)
        conditions.append({"$comment": f"data: {name}", "if": {"properties": {"task": {"const": name}},
                                                                "required": ["task"]},
                           "then": {"properties": {"data": options_schema(cls)}}})
    pretrained_tokenizers = set(pretrained.all_tokenizers())
    any_pretrained_tokenizer: dict[str, Any] = {}
    own: dict[str, list[str]] = {"tokenizer": [], "model": []}        # the names a recipe of its own may give
    for section in ("tokenizer", "model"):
        kind, key, base = PLUGIN_SECTIONS[section]
        for name in registry.names(kind):
            cls = getattr(registry.get(kind, name), "Options", base)
            if section == "tokenizer" and registry.get(kind, name) in pretrained_tokenizers:
                any_pretrained_tokenizer.update(options_schema(cls)["properties"])
                continue
            own[section].append(name)
            conditions.append({"$comment": f"{section}: {name}",
                               "if": {"allOf": [_when(section, key, name, name == DEFAULT_PLUGINS[section]),
                                                {"not": pretrained_model}]},
                               "then": {"properties": {section: options_schema(cls, name_key=key, name=name)}}})
    conditions.append({"$comment": "tokenizer: pretrained", "if": pretrained_model, "then": {"properties": {"tokenizer": {
        "type": "object", "additionalProperties": False, "properties": any_pretrained_tokenizer,
        "description": "the pretrained folder's tokenizer; which of these keys it takes is known when the "
                       "folder is read"}}}})
    transformer = getattr(registry.get("models", "transformer"), "Options", ModelOptions) \
        if "transformer" in models else ModelOptions
    conditions.append({"$comment": "model: pretrained", "if": pretrained_model, "then": {"properties": {"model": {
        **options_schema(transformer, only=("arch", *PRETRAINED_FREE)), "required": ["pretrained"],
        "description": "a pretrained folder's model: the folder fixes every other key"}}}})
    def entries(kind: str, base: type, what: str) -> dict:
        names = registry.names(kind)
        items = [{**options_schema(getattr(registry.get(kind, n), "Options", base), name_key="name", name=n),
                  "required": ["name"]} for n in names]
        one = {"anyOf": [{"enum": names, "description": f"a {what}'s name"}, *items]}
        return {"anyOf": [{"type": "array", "items": one}, one, {"type": "null"}]}

    props = {
        "task": {"enum": tasks, "description": "the task plugin: what the data is and how it is read"},
        "data": {"type": "object", "description": "the task's keys (see `t2t recipe-keys data`)"},
        "tokenizer": {"type": "object", "properties": {"name": {"enum": own["tokenizer"]}},
                      "description": "the tokenizer plugin and its keys (default name: char)"},
        "model": {"type": "object", "properties": {"arch": {"enum": models}},
                  "description": "the model plugin and its keys (default arch: rnn)"},
        "train": options_schema(TrainOptions),
        "decode": options_schema(DecodeOptions),
        "metrics": {**entries("metrics", MetricOptions, "metric"),
                    "description": "metrics to validate and evaluate with (default: the task's)"},
        "loggers": {**entries("loggers", LoggerOptions, "logger"),
                    "description": "trackers the run is recorded in besides log.jsonl (default: none)"},
        "seed": {"type": "integer", "description": "seed of weights, data order and sampling", "default": 1},
        "output_dir": {"type": "string", "description": "the run folder (default: runs/TASK)"},
    }
    assert set(props) == set(SECTIONS), "a recipe section without a schema"
    return {"$schema": DRAFT, "title": "t2t recipe",
            "description": "A t2t recipe: task, data, tokenizer, model, training, decoding and metrics in one file.",
            "type": "object", "properties": props, "required": ["task"], "additionalProperties": False,
            "allOf": conditions}


# --------------------------------------------------------------------------- tables


def key_rows(cls: type, prefix: str) -> list[tuple[str, str, str, str]]:
    """(key, type and bounds, default, help) of every field of an options class, nested classes
    flattened (`train.lora.rank`)."""
    hints = typing.get_type_hints(cls)
    rows = []
    for key, f in fields_of(cls).items():
        tp = hints[key]
        inner = _dataclass_of(tp)
        if inner is not None:
            rows.append((f"{prefix}{key}", "mapping or null", "null", f.metadata.get("help", "")))
            rows += key_rows(inner, f"{prefix}{key}.")
            continue
        default = _default(f)
        shown = "(required)" if default is dataclasses.MISSING else json.dumps(default)
        rows.append((f"{prefix}{key}", _describe_type(tp, f.metadata.get("min"), f.metadata.get("max")), shown,
                     f.metadata.get("help", "")))
    return rows


def _dataclass_of(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    inner = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
        return inner[0]
    return None


def _describe_type(tp: Any, lo: float | None, hi: float | None) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = _describe_type(inner[0], lo, hi) if len(inner) == 1 else "any"
        return f"{text} or null" if type(None) in args else text
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (tuple, list):
        items = [a for a in args if a is not Ellipsis]
        return f"list of {_describe_type(items[0], lo, hi) if items else 'values'}" + \
            (f" ({len(args)})" if origin is tuple and Ellipsis not in args and len(args) > 1 else "")
    if origin is dict:
        return "mapping"
    name = getattr(tp, "__name__", str(tp))
    if lo is not None or hi is not None:
        name += f" in [{'' if lo is None else lo}, {'' if hi is None else hi}]"
    return name


def key_tables(section: str | None = None, name: str | None = None, registry=None) -> list[tuple[str, list]]:
    """(heading, rows) per table: the fixed sections, and one table per installed plugin of the
    plugin sections (`data` per task, `tokenizer` per name, `model` per arch, `metrics` per metric)."""
    registry = get_registry(registry)
    tables: list[tuple[str, list]] = []
    wanted = [section] if section else [s for s in SECTIONS if s not in ("task", "seed", "output_dir")]
    for sec in wanted:
        if sec in ("train", "decode"):
            cls = TrainOptions if sec == "train" else DecodeOptions
            tables.append((sec, key_rows(cls, f"{sec}.")))
        elif sec in PLUGIN_SECTIONS:
            kind, key, base = PLUGIN_SECTIONS[sec]
            for plugin in registry.names(kind):
                if name and plugin != name:
                    continue
                cls = getattr(registry.get(kind, plugin), "Options", base)
                heading = f"{sec} ({'task' if sec == 'data' else key}: {plugin})"
                tables.append((heading, key_rows(cls, f"{sec}." if sec not in ("metrics", "loggers") else f"{sec}[{plugin}].")))
        elif sec in ("task", "seed", "output_dir"):
            props = recipe_schema(registry)["properties"][sec]
            tables.append((sec, [(sec, "one of " + ", ".join(props["enum"]) if "enum" in props else props["type"],
                                  json.dumps(props.get("default")) if "default" in props else "",
                                  props.get("description", ""))]))
    return tables
