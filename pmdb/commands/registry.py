"""Decorators that declare dcmds and walkers, and the registry that finds them.

Decorators only attach a spec to the function; nothing is registered at import
time. A Registry (owned by a Session) collects specs from the built-in
``pmdb.dcmds`` / ``pmdb.walkers`` packages, from the entry-point group
``pmdb.plugins``, and from plugin paths in pmdb.toml. A plugin that fails to
load is reported and skipped; a duplicate name is an error.

Built-ins are known by name from a generated manifest (manifest.py) and their
module is imported when one of its names is first used, or when everything is
listed (``dcmds``, ``walkers``); plugins are imported at discovery.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pmdb.errors import CommandError, PmdbError

ADDR_MODES = ("none", "optional", "required")


@dataclass
class DcmdSpec:
    """A registered dcmd: its function and what its help and argument parsing say."""

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
    """A registered walker: its function and the type of what it yields."""

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
        self._dcmds: dict[str, DcmdSpec] = {}
        self._walkers: dict[str, WalkerSpec] = {}
        self._aliases: dict[str, str] = {}
        # built-ins known from the manifest, their module not imported yet: name -> module
        self._lazy_dcmds: dict[str, str] = {}
        self._lazy_aliases: dict[str, str] = {}    # alias -> dcmd name
        self._lazy_walkers: dict[str, str] = {}
        self._builtins: list[str] = []              # every built-in module (imported or not)
        self._imported: set[str] = set()
        self.load_errors: list[str] = []

    # -- lookup --------------------------------------------------------------

    @property
    def dcmds(self) -> dict[str, DcmdSpec]:
        """Every dcmd by name (imports every built-in module not imported yet)."""
        self.load_all()
        return self._dcmds

    @property
    def walkers(self) -> dict[str, WalkerSpec]:
        """Every walker by name (imports every built-in module not imported yet)."""
        self.load_all()
        return self._walkers

    def dcmd(self, name: str) -> DcmdSpec:
        spec = self._find_dcmd(name)
        if spec is None and self._lazy_left():
            self.load_all()        # a name the manifest lacks (stale): look in every module
            spec = self._find_dcmd(name)
        if spec is None:
            raise CommandError(f"unknown dcmd '{name}' (::dcmds lists them)")
        return spec

    def walker(self, name: str) -> WalkerSpec:
        if name not in self._walkers and name in self._lazy_walkers:
            self._import_builtin(self._lazy_walkers[name])
        if name not in self._walkers and self._lazy_left():
            self.load_all()
        spec = self._walkers.get(name)
        if spec is None:
            raise CommandError(f"unknown walker '{name}' (::walkers lists them)")
        return spec

    def has_dcmd(self, name: str) -> bool:
        return (name in self._dcmds or name in self._aliases or name in self._lazy_dcmds
                or name in self._lazy_aliases)

    def dcmd_names(self) -> list[str]:
        return sorted(set(self._dcmds) | set(self._aliases) | set(self._lazy_dcmds) | set(self._lazy_aliases))

    def _find_dcmd(self, name: str) -> DcmdSpec | None:
        canonical = self._lazy_aliases.get(name, name)
        if canonical in self._lazy_dcmds and canonical not in self._dcmds:
            self._import_builtin(self._lazy_dcmds[canonical])
        return self._dcmds.get(name) or self._dcmds.get(self._aliases.get(name, ""))

    def _lazy_left(self) -> bool:
        return any(m not in self._imported for m in self._builtins)

    # -- registration ----------------------------------------------------------

    def add_module(self, module: ModuleType, origin: str = "") -> None:
        """Register every dcmd and walker a module defines."""
        for _, obj in inspect.getmembers(module):
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            for spec in getattr(obj, "__pmdb_dcmds__", []):
                spec.origin = origin or module.__name__
                self._add_dcmd(spec, module.__name__)
            wspec = getattr(obj, "__pmdb_walker__", None)
            if wspec is not None:
                wspec.origin = origin or module.__name__
                self._add_walker(wspec, module.__name__)

    def _add_dcmd(self, spec: DcmdSpec, module: str = "") -> None:
        for n in (spec.name, *spec.aliases):
            lazy = self._lazy_dcmds.get(self._lazy_aliases.get(n, n))
            if n in self._dcmds or n in self._aliases or (lazy is not None and lazy != module):
                raise CommandError(f"duplicate dcmd name '{n}' ({spec.origin})")
        self._dcmds[spec.name] = spec
        for a in spec.aliases:
            self._aliases[a] = spec.name

    def _add_walker(self, spec: WalkerSpec, module: str = "") -> None:
        lazy = self._lazy_walkers.get(spec.name)
        if spec.name in self._walkers or (lazy is not None and lazy != module):
            raise CommandError(f"duplicate walker name '{spec.name}' ({spec.origin})")
        self._walkers[spec.name] = spec

    # -- discovery -------------------------------------------------------------

    def discover(self, plugin_paths: Iterable[str] = ()) -> None:
        """Built-ins (by the manifest), then entry points, then plugin paths from the configuration."""
        from pmdb.commands import builtin_names as manifest
        from pmdb.commands.manifest import PACKAGES, builtin_modules

        self._lazy_dcmds.update(manifest.DCMDS)
        self._lazy_aliases.update(manifest.ALIASES)
        self._lazy_walkers.update(manifest.WALKERS)
        known = set(manifest.MODULES)
        for pkg_name in PACKAGES:
            for full in builtin_modules(builtin_package(pkg_name)):
                self._builtins.append(full)
                if full not in known:      # newer than the manifest: import it now
                    self._import_builtin(full)
        if _may_have_entry_points():
            from importlib.metadata import entry_points

            for ep in entry_points(group="pmdb.plugins"):
                self._load(ep.load, f"entry point {ep.name}")
        for path in plugin_paths:
            self.load_path(path)

    def load_all(self) -> None:
        """Import every built-in module not imported yet."""
        for full in self._builtins:
            self._import_builtin(full)

    def _import_builtin(self, full: str) -> None:
        if full in self._imported:
            return
        self._imported.add(full)
        for lazy in (self._lazy_dcmds, self._lazy_walkers):
            for name in [n for n, m in lazy.items() if m == full]:
                del lazy[name]
        for alias in [a for a, n in self._lazy_aliases.items() if n not in self._lazy_dcmds]:
            del self._lazy_aliases[alias]
        self._load(functools.partial(importlib.import_module, full), full)

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


def _may_have_entry_points() -> bool:
    """Whether an installed distribution may declare ``pmdb.plugins`` entry points, found
    without importing importlib.metadata (~30 ms, more than a whole command): a look at the
    ``entry_points.txt`` of every ``*.dist-info``/``*.egg-info`` on sys.path. Anything it
    cannot read plainly (a zip on the path) answers yes, so the real search decides."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except NotADirectoryError:
            return True
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(entry or ".", name, "entry_points.txt"), "rb") as f:
                    if b"pmdb.plugins" in f.read():
                        return True
            except FileNotFoundError:
                continue
            except OSError:
                return True
    return False


def builtin_package(name: str) -> ModuleType:
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
