"""t2t's built-in plugins, registered through the `t2t` entry-point group like any other."""

# The entry points in pyproject.toml name these modules; `Registry.from_plugins(builtins=True)` uses
# this list to build a manager without entry points (tests, embedded use).
BUILTIN_MODULES = ("synthetic", "translation", "summarization", "dialogue", "speech", "tokenizers", "metrics",
                   "models", "loggers")
