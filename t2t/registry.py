"""The plugin manager: load plugins from the `t2t` entry-point group, look things up by name.

Built-in plugins and third-party ones arrive the same way. A plugin that fails to import, misspells
a hook, or registers something broken is recorded as a failure naming its package; the others keep
working. A name claimed by two plugins is unusable until one goes, and the error names both.

`T2T_LOAD_PLUGINS=a,b` loads only those entry points (or distributions); `T2T_BLOCK_PLUGINS=c`
skips those.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from dataclasses import dataclass
from typing import Any, Iterable

import pluggy

from t2t import hookspecs
from t2t.errors import PluginError, did_you_mean
from t2t.logger import Logger
from t2t.metric import Metric
from t2t.models.base import Seq2Seq
from t2t.task import Task
from t2t.tokenizer import Tokenizer
from t2t.version import __version__

GROUP = "t2t"
# kind -> (registration hook, what one is called in messages)
KINDS = {
    "tasks": ("t2t_register_tasks", "task"),
    "tokenizers": ("t2t_register_tokenizers", "tokenizer"),
    "metrics": ("t2t_register_metrics", "metric"),
    "models": ("t2t_register_models", "model"),
    "loggers": ("t2t_register_loggers", "logger"),
}


@dataclass(frozen=True)
class Entry:
    """A registered name: the class, and the plugin and package it came from."""

    kind: str
    name: str
    obj: Any
    plugin: str
    package: str
    version: str


@dataclass(frozen=True)
class Failure:
    """A plugin (or one of its registrations) that could not be used, and why."""

    plugin: str
    package: str
    message: str


# what each kind's registered classes must subclass
BASE_CLASSES = {"tasks": Task, "tokenizers": Tokenizer, "metrics": Metric, "models": Seq2Seq, "loggers": Logger}


class Registry:
    """One pluggy PluginManager plus the names its plugins registered."""

    def __init__(self, pm: pluggy.PluginManager | None = None):
        if pm is None:
            pm = pluggy.PluginManager(GROUP)
            pm.add_hookspecs(hookspecs)
        self.pm = pm
        self.failures: list[Failure] = []
        self.packages: dict[str, tuple[str, str]] = {}   # plugin name -> (package, version)
        self._entries: dict[str, dict[str, Entry]] | None = None
        self._clashes: dict[tuple[str, str], list[Entry]] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_entry_points(cls) -> "Registry":
        """Every plugin of the `t2t` entry-point group (subject to the env allow/block lists)."""
        reg = cls()
        allow = _env_list("T2T_LOAD_PLUGINS")
        block = _env_list("T2T_BLOCK_PLUGINS")
        seen = set()
        for ep in md.entry_points(group=GROUP):
            dist = getattr(ep, "dist", None)
            package = dist.name if dist else "?"
            version = dist.version if dist else "?"
            if (ep.name, package) in seen:
                continue
            seen.add((ep.name, package))
            if allow is not None and ep.name not in allow and package not in allow:
                continue
            if ep.name in block or package in block:
                continue
            try:
                module = ep.load()
            except Exception as e:  # a broken plugin must not take t2t down with it
                reg.failures.append(Failure(ep.name, package, f"failed to import {ep.value}: "
                                            f"{type(e).__name__}: {e}; fix or uninstall {package}"))
                continue
            reg.register(module, name=ep.name, package=package, version=version)
        return reg

    @classmethod
    def from_plugins(cls, plugins: Iterable[Any] = (), builtins: bool = True) -> "Registry":
        """A manager holding exactly the built-ins (optional) and the given plugin objects."""
        reg = cls()
        if builtins:                 # t2t's own entry points: the core names no plugin package
            try:
                dist = md.distribution("t2t")
            except md.PackageNotFoundError:
                raise PluginError("the built-in plugins come through t2t's entry points, and t2t is not "
                                  "installed; install it (pip install -e .)") from None
            for ep in dist.entry_points:
                if ep.group == GROUP:
                    reg.register(ep.load(), name=ep.name, package="t2t", version=dist.version)
        for plugin in plugins:
            reg.register(plugin)
        return reg

    def register(self, plugin: Any, name: str | None = None, package: str | None = None,
                 version: str | None = None) -> bool:
        """Add a plugin (module or object); record a failure instead of raising if it is broken."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        package = package or getattr(plugin, "__module__", None) or name
        if version is None:
            version = __version__ if package == "t2t" else "?"
        try:
            self.pm.register(plugin, name=name)
        except Exception as e:  # pluggy.PluginValidationError, ValueError (already registered)
            self.failures.append(Failure(name, package, f"not registered: {e}"))
            return False
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            self.pm.unregister(plugin)
            specs = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("t2t_")))
            self.failures.append(Failure(name, package, f"{e}; known hooks: {specs}"))
            return False
        self.packages[name] = (package, version)
        self._entries = None
        return True

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.packages.pop(name, None)
        self._entries = None

    @property
    def hook(self):
        return self.pm.hook

    # ------------------------------------------------------------------ look-ups
    def entries(self, kind: str) -> dict[str, Entry]:
        if self._entries is None:
            self._collect()
        return self._entries[kind]

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries(kind))

    def get(self, kind: str, name: str) -> Any:
        """The class registered under `name`, or a PluginError that lists what is installed."""
        entries = self.entries(kind)
        if name in entries:
            return entries[name].obj
        what = KINDS[kind][1]
        if (kind, name) in self._clashes:
            who = " and ".join(f"{e.package} (plugin {e.plugin})" for e in self._clashes[(kind, name)])
            raise PluginError(f"{what} '{name}' is registered by both {who}; uninstall one, or block one "
                              f"with T2T_BLOCK_PLUGINS")
        broken = sorted({f.package for f in self.failures})
        extra = f" (plugins that failed to load: {', '.join(broken)}; see `t2t plugins`)" if broken else ""
        installed = ", ".join(self.names(kind)) or "none"
        raise PluginError(f"unknown {what} '{name}'{extra}; installed {kind}: {installed}"
                          f"{did_you_mean(name, entries)}")

    def _collect(self) -> None:
        self._entries = {kind: {} for kind in KINDS}
        self._clashes = {}
        self.failures = [f for f in self.failures if not f.message.startswith("registration:")]
        for kind, (hook_name, what) in KINDS.items():
            base = BASE_CLASSES[kind]
            for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
                package, version = self.packages.get(impl.plugin_name, ("?", "?"))
                found: list[Any] = []
                try:
                    returned = impl.function(register=found.append)
                except Exception as e:
                    self._fail(impl.plugin_name, package, f"{hook_name} raised {type(e).__name__}: {e}")
                    continue
                if returned is not None:
                    self._fail(impl.plugin_name, package, f"{hook_name} returned {type(returned).__name__}; "
                               f"it must call register(cls) for each {what} and return nothing")
                for obj in found:
                    problem = _check_registration(obj, base, what)
                    if problem:
                        self._fail(impl.plugin_name, package, f"{hook_name}: {problem}")
                        continue
                    entry = Entry(kind, obj.name, obj, impl.plugin_name, package, version)
                    table = self._entries[kind]
                    if (kind, obj.name) in self._clashes:
                        self._clashes[(kind, obj.name)].append(entry)
                    elif obj.name in table and table[obj.name].obj is not obj:
                        self._clashes[(kind, obj.name)] = [table.pop(obj.name), entry]
                    else:
                        table[obj.name] = entry

    def _fail(self, plugin: str, package: str, message: str) -> None:
        self.failures.append(Failure(plugin, package, "registration: " + message))

    def describe(self) -> list[dict]:
        """What `t2t plugins --verbose` prints: each plugin with package, version, hooks, names."""
        self.entries("tasks")
        out = []
        for name, plugin in self.pm.list_name_plugin():
            package, version = self.packages.get(name, ("?", "?"))
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            registered = {kind: sorted(e.name for e in self.entries(kind).values() if e.plugin == name)
                          for kind in KINDS}
            out.append({"plugin": name, "package": package, "version": version, "hooks": hooks,
                        "registered": {k: v for k, v in registered.items() if v}})
        return out

    def versions(self) -> dict[str, str]:
        """package -> version for every loaded plugin (saved with each run and checkpoint)."""
        return {pkg: ver for pkg, ver in self.packages.values()}


def _check_registration(obj: Any, base: type, what: str) -> str | None:
    if not isinstance(obj, type):
        return f"registered {obj!r}, which is not a class; register the {what} class itself"
    if not issubclass(obj, base):
        return f"{obj.__module__}.{obj.__qualname__} is not a subclass of {base.__module__}.{base.__name__}"
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        return f"{obj.__qualname__} has no `name`; give the class a unique name = '...'"
    return None


def _env_list(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None if var == "T2T_LOAD_PLUGINS" else set()
    return {v.strip() for v in value.split(",") if v.strip()}


_current: Registry | None = None


def get_registry(given: Registry | None = None) -> Registry:
    """`given` where a caller passed one, else the process's registry, loaded from entry points on
    first use."""
    global _current
    if given is not None:
        return given
    if _current is None:
        _current = Registry.from_entry_points()
    return _current


def set_registry(registry: Registry | None) -> Registry | None:
    """Install `registry` as the process's registry (None: reload on next use); returns the old one."""
    global _current
    old, _current = _current, registry
    return old
