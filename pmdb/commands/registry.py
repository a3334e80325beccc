"""Decorators that declare dcmds and walkers, and the registry that finds them.

Decorators only attach a spec to the function; nothing is registered at import
time. A Registry (owned by a Session) collects specs from the built-in
``pmdb.dcmds`` / ``pmdb.walkers`` packages, from the entry-point group
``pmdb.plugins``, and from plugin paths in pmdb.toml. A plugin that fails to
load is reported and skipped; a duplicate name is an error.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import pkgutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from pmdb.errors import CommandError, PmdbError

ADDR_MODES = ("none", "optional", "required")


@dataclass
class DcmdSpec:
    name: str
    func: Callable[..., Any]
    addr: str = "optional"
    synopsis: str = ""
    example: str = ""
    aliases: tuple[str, ...] = ()
    # "v" -> "verbose"; "c:" -> "func" (takes a value); "r::" repeats (see commands/args.py)
    opts: dict[str, str] = field(default_factory=dict)
    walker: str | None = None    # without an address, run once per address of this walker
    usage: str = ""              # argument synopsis, e.g. "[-v] [type] [member...]"
    origin: str = ""

    @property
    def help(self) -> str:
        return inspect.getdoc(self.func) or self.synopsis


@dataclass
class WalkerSpec:
    name: str
    func: Callable[..., Any]
    synopsis: str = ""
    type_name: str | None = None  # the type of what it yields, handed on down the pipe
    example: str = ""
    origin: str = ""

    @property
    def help(self) -> str:
        return inspect.getdoc(self.func) or self.synopsis


def dcmd(name: str, *, addr: str = "optional", synopsis: str = "", example: str = "",
         aliases: Iterable[str] = (), opts: dict[str, str] | None = None,
         walker: str | None = None, usage: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a dcmd: ``func(ctx, *args, **options)``."""
    if addr not in ADDR_MODES:
        raise ValueError(f"addr must be one of {ADDR_MODES}")

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        specs = getattr(func, "__pmdb_dcmds__", [])
        specs.append(DcmdSpec(name, func, addr, synopsis, example, tuple(aliases), dict(opts or {}),
                              walker, usage))
        func.__pmdb_dcmds__ = specs  # type: ignore[attr-defined]
        return func

    return mark


def walker(name: str, *, synopsis: str = "", type_name: str | None = None,
           example: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a walker: ``func(ctx, start) -> Iterator[int]`` (start may be None)."""

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        func.__pmdb_walker__ = WalkerSpec(name, func, synopsis, type_name, example)  # type: ignore[attr-defined]
        return func

    return mark


class Registry:
    def __init__(self) -> None:
        self.dcmds: dict[str, DcmdSpec] = {}
        self.walkers: dict[str, WalkerSpec] = {}
        self._aliases: dict[str, str] = {}
        self.load_errors: list[str] = []

    # -- lookup --------------------------------------------------------------

    def dcmd(self, name: str) -> DcmdSpec:
        spec = self.dcmds.get(name) or self.dcmds.get(self._aliases.get(name, ""))
        if spec is None:
            raise CommandError(f"unknown dcmd '{name}' (::dcmds lists them)")
        return spec

    def walker(self, name: str) -> WalkerSpec:
        spec = self.walkers.get(name)
        if spec is None:
            raise CommandError(f"unknown walker '{name}' (::walkers lists them)")
        return spec

    def has_dcmd(self, name: str) -> bool:
        return name in self.dcmds or name in self._aliases

    def dcmd_names(self) -> list[str]:
        return sorted(set(self.dcmds) | set(self._aliases))

    # -- registration ----------------------------------------------------------

    def add_module(self, module: ModuleType, origin: str = "") -> None:
        """Register every dcmd and walker a module defines."""
        for _, obj in inspect.getmembers(module):
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            for spec in getattr(obj, "__pmdb_dcmds__", []):
                spec.origin = origin or module.__name__
                self._add_dcmd(spec)
            wspec = getattr(obj, "__pmdb_walker__", None)
            if wspec is not None:
                wspec.origin = origin or module.__name__
                self._add_walker(wspec)

    def _add_dcmd(self, spec: DcmdSpec) -> None:
        for n in (spec.name, *spec.aliases):
            if n in self.dcmds or n in self._aliases:
                raise CommandError(f"duplicate dcmd name '{n}' ({spec.origin})")
        self.dcmds[spec.name] = spec
        for a in spec.aliases:
            self._aliases[a] = spec.name

    def _add_walker(self, spec: WalkerSpec) -> None:
        if spec.name in self.walkers:
            raise CommandError(f"duplicate walker name '{spec.name}' ({spec.origin})")
        self.walkers[spec.name] = spec

    # -- discovery -------------------------------------------------------------

    def discover(self, plugin_paths: Iterable[str] = ()) -> None:
        """Built-ins, then entry points, then plugin paths from the configuration."""
        for pkg_name in ("dcmds", "walkers"):
            package = _builtin_package(pkg_name)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
                full = f"{package.__name__}.{info.name}"
                self._load(functools.partial(importlib.import_module, full), full)
        for ep in entry_points(group="pmdb.plugins"):
            self._load(ep.load, f"entry point {ep.name}")
        for path in plugin_paths:
            self.load_path(path)

    def load_path(self, path: str) -> None:
        p = Path(path).expanduser()
        files = sorted(p.glob("*.py")) if p.is_dir() else [p]
        for f in files:
            self._load(functools.partial(_exec_file, f"pmdb_plugin_{f.stem}", f), str(f))

    def _load(self, loader: Callable[[], Any], origin: str) -> None:
        try:
            obj = loader()
            if isinstance(obj, ModuleType):
                self.add_module(obj, origin)
            elif callable(obj):
                obj(self)  # an entry point may name a function that registers things
        except PmdbError as err:
            self.load_errors.append(f"plugin {origin}: {err}")
        except Exception as err:  # a broken plugin must not take pmdb down
            self.load_errors.append(f"plugin {origin} failed to load: {type(err).__name__}: {err}")


def _builtin_package(name: str) -> ModuleType:
    """pmdb.dcmds / pmdb.walkers: installed inside the package, or beside pmdb/ in a checkout."""
    full = f"pmdb.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError:
        pass
    root = Path(__file__).resolve().parent.parent.parent / name
    return _exec_file(full, root / "__init__.py", package_dir=root)


def _exec_file(name: str, path: Path, package_dir: Path | None = None) -> ModuleType:
    """Import the file at path as module name (a package when package_dir is given)."""
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(package_dir)] if package_dir else None)
    if spec is None or spec.loader is None:
        raise CommandError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
