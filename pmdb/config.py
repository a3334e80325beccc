"""Options: one declarative type (name, type, bounds, default, doc, hook), read from pmdb.toml.

Every option pmdb has is in OPTIONS; pmdb.toml at the top of the tree documents
the same names (a test keeps the two in step). Values are checked here, once,
with clear errors, then read with ``config.get(name)``. The ``[emulate]`` table
has its own table of the same Option type (pmdb.emulate.options), checked by the
same ``check_value``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pmdb.errors import PmdbError


class ConfigError(PmdbError):
    """A bad option name or value."""


Hook = Callable[[Any, str], Any]   # (value, where) -> the value to keep, or ConfigError


@dataclass(frozen=True)
class Option:
    """One option: its name, what it may hold, its default and what it is for.

    ``type`` is bool, int, str or list (a list of strings; a lone string counts as a
    list of one). Values a type cannot describe (an address that may be an expression,
    a table of registers) have type ``object`` and a ``hook(value, where)`` that checks
    them and returns what to keep, raising ConfigError with ``where`` first."""

    name: str                 # "table.key" in OPTIONS; the key alone in an owned table
    type: type
    default: Any
    doc: str
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    hook: Hook | None = None


OPTIONS: tuple[Option, ...] = (
    Option("symbols.search_path", list, [], "directories searched for executables and libraries "
           "named by a core (after their recorded path and the core's own directory)"),
    Option("symbols.sysroot", str, "", "a root prefixed to recorded library paths (like gdb's sysroot)"),
    Option("symbols.check_build_id", bool, True, "ignore a found file whose build-id differs from the core's"),
    Option("plugins.paths", list, [], "extra plugin files or directories of *.py plugins"),
    Option("shell.timeout", int, 60, "seconds a '!' shell pipe may run", 1, 86400),
    Option("unwind.max_frames", int, 512, "frames at most in one backtrace", 1, 100000),
    Option("repl.history_file", str, "~/.pmdb_history", "where the prompt keeps its history"),
    Option("repl.pager", bool, True, "page output longer than the screen"),
    Option("repl.prompt", str, "> ", "the prompt string"),
    Option("output.color", str, "auto", "color on a terminal", choices=("auto", "always", "never")),
    Option("output.progress_after_ms", int, 1000, "milliseconds a long command runs before its "
           "progress bar shows on a terminal", 0, 3_600_000),
    Option("limits.max_lines", int, 1_000_000, "lines one command may print; more stops it "
           "with one line naming this limit", 1, 1 << 40),
    Option("limits.max_read_bytes", int, 4 << 20, "bytes one format command (addr,count/fmt) may "
           "read from the target", 1, 1 << 50),
    Option("limits.max_items", int, 1_000_000, "addresses one pipeline stage may hand on to the next, "
           "and repetitions of a format that only moves dot (addr,count/+)",
           1, 1 << 40),
    Option("debuginfo.directories", list, ["/usr/lib/debug"], "directories searched for a kernel's "
           "debug vmlinux (Debian's -dbg layout: boot/vmlinux-RELEASE, lib/modules/RELEASE/vmlinux, "
           ".build-id/) and for user cores' separate debug files (.build-id/, .gnu_debuglink)"),
    Option("debuginfo.kernel_btf", bool, True, "read the kernel's types from the dump's BTF; "
           "false: from the debug vmlinux's DWARF alone"),
    Option("cache.directory", str, "", "where decompressed dumps, kernel BTF and DWARF indexes are kept "
           "(empty: $PMDB_CACHE_DIR, else $XDG_CACHE_HOME/pmdb, else ~/.cache/pmdb)"),
    Option("cache.max_size_mb", int, 32768, "megabytes the cache may hold; the least recently "
           "used files go first", 1, 1 << 30),
)

_BY_NAME = {o.name: o for o in OPTIONS}


class Config:
    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = {o.name: o.default for o in OPTIONS}
        self._tables: dict[str, dict[str, Any]] = {}   # OWNED_TABLES, raw, for their owners
        for name, value in (values or {}).items():
            self.set(name, value)

    def get(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise ConfigError(f"unknown option '{name}'") from None

    def set(self, name: str, value: Any) -> None:
        opt = _BY_NAME.get(name)
        if opt is None:
            raise ConfigError(f"unknown option '{name}'")
        self._values[name] = check_value(opt, value)

    @classmethod
    def load(cls, path: str | None = None) -> Config:
        """Defaults, overridden by a pmdb.toml: the given one, $PMDB_CONFIG, or ~/.config/pmdb/pmdb.toml."""
        candidates = [path] if path else [os.environ.get("PMDB_CONFIG"),
                                          str(Path.home() / ".config" / "pmdb" / "pmdb.toml")]
        for cand in candidates:
            if cand and Path(cand).is_file():
                return cls.from_file(cand)
            if cand and path:
                raise ConfigError(f"{cand}: no such configuration file")
        return cls()

    @classmethod
    def from_file(cls, path: str) -> Config:
        import tomllib  # only with a file to read (~5 ms of every start-up otherwise)

        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"{path}: {err}") from None
        except UnicodeDecodeError as err:     # tomllib decodes UTF-8 before it parses
            raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
        cfg = cls(flatten(data))
        cfg._tables = {name: data[name] for name in OWNED_TABLES if isinstance(data.get(name), dict)}
        return cfg

    def table(self, name: str) -> dict[str, Any]:
        """An owned table (e.g. [emulate]) as written; its owner validates it."""
        return dict(self._tables.get(name, {}))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; tables that are not options stay for their owners."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in _BY_NAME:
            if name in OWNED_TABLES:
                continue
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


# tables whose contents another component validates with its own table (e.g. ::emulate)
OWNED_TABLES: set[str] = {"emulate"}


def check_value(opt: Option, value: Any, where: str = "") -> Any:
    """The value to keep for opt, or ConfigError starting with where (default "option NAME")."""
    where = where or f"option {opt.name}"
    if opt.hook is not None:
        return opt.hook(value, where)
    if opt.type is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if opt.type is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if opt.type is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if opt.type is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    if opt.low is not None and value < opt.low or opt.high is not None and value > opt.high:
        raise ConfigError(f"{where}: {value} is outside [{opt.low}, {opt.high}]")
    if opt.choices and value not in opt.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(opt.choices)}")
    return value
