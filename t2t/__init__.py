"""t2t: a plugin-based text-to-text framework.

The public API: plugin authors use `hookimpl`, `Task`, `Example`, `Tokenizer`, `Metric`, `Score`,
`Logger` and the option helpers; users call `load_recipe`, `train`, `evaluate` and `load`.
"""

from __future__ import annotations

import importlib

from t2t.version import __version__
from t2t.errors import (CheckpointError, DataError, PluginError, RecipeError, T2TError,
                        TrainingError)
from t2t.hookspecs import hookimpl
from t2t.logger import Logger
from t2t.metric import Metric, Score
from t2t.options import (DataOptions, DecodeOptions, LoggerOptions, MetricOptions, ModelOptions, OptionError,
                         Options, TokenizerOptions, TrainOptions, option)
from t2t.recipe import Recipe, load_recipe
from t2t.task import Example, Task
from t2t.tokenizer import Tokenizer
from t2t.vocab import Vocab

_LAZY = {"train": ("t2t.trainer", "train"), "evaluate": ("t2t.evaluation", "evaluate"),
         "load": ("t2t.pipeline", "load"), "Pipeline": ("t2t.pipeline", "Pipeline"),
         "get_registry": ("t2t.registry", "get_registry"), "Registry": ("t2t.registry", "Registry")}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 't2t' has no attribute '{name}'")


__all__ = ["__version__", "hookimpl", "Task", "Example", "Tokenizer", "Metric", "Score", "Logger", "Vocab",
           "Recipe", "load_recipe", "option", "Options", "DataOptions", "TokenizerOptions", "ModelOptions",
           "MetricOptions", "LoggerOptions", "TrainOptions", "DecodeOptions", "OptionError", "T2TError", "RecipeError",
           "PluginError", "DataError", "CheckpointError", "TrainingError", "train", "evaluate", "load",
           "Pipeline", "get_registry", "Registry"]
