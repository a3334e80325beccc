"""The ``[emulate]`` options: one declarative table, read from pmdb.toml, ``-f file.toml`` and flags.

The table uses pmdb.config's Option type and is checked by its check_value;
pmdb/config.py leaves the ``emulate`` table to this module (OWNED_TABLES) because
its values are not plain scalars: registers and patches are tables, and addresses
may be expressions (``"tunable"``, ``"g_table+8"``) that only a session can
evaluate, so those options have hooks. Checking here is structural (names, types,
bounds); expressions are evaluated later, when the call is set up. Precedence:
pmdb.toml < -f file < flags.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from pmdb.config import Config, ConfigError, Hook, Option, check_value


def _addr(value: Any, where: str) -> int | str:
    """An address: a non-negative integer, or an expression evaluated when the call is set up."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{where}: expected an address (integer or expression), got {value!r}")
    if isinstance(value, int) and value < 0:
        raise ConfigError(f"{where}: {value} is negative")
    return value


def _addrs(value: Any, where: str) -> list[int | str]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    return [_addr(v, where) for v in value]


def _registers(value: Any, where: str) -> dict[str, int | str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table of register = value")
    return {str(k): _addr(v, f"{where}.{k}") for k, v in value.items()}


def _patches(value: Any, where: str) -> list[dict[str, Any]]:
    return [_patch(p, where) for p in (value if isinstance(value, list) else [value])]


def _opt(name: str, default: Any, doc: str, *, kind: type = object, hook: Hook | None = None,
         low: int | None = None, high: int | None = None) -> Option:
    return Option(name, kind, default, doc, low, high, hook=hook)


EMULATE_OPTIONS: tuple[Option, ...] = (
    _opt("function", None, "the function to call: a symbol or expression (FUNC::emulate)", hook=_addr),
    _opt("pc", None, "start here instead of at a function (no arguments are placed)", hook=_addr),
    _opt("npc", None, "SPARC: the next pc (default pc+4)", hook=_addr),
    _opt("args", [], "arguments, placed by the calling convention", hook=_addrs),
    _opt("registers", {}, "registers by name: { rdi = 5, \"%g7\" = \"0x330380\" }", hook=_registers),
    _opt("thread_pointer", None,
         "the thread pointer: fs_base on x86-64, %g7 on SPARC (default: the thread's)", hook=_addr),
    _opt("thread", None, "start from this thread's registers (default: the current one)", kind=int),
    _opt("cpu", None, "kernel: the CPU the call runs on: its per-CPU base in GS and its "
         "current task (default: the thread's CPU, else the panic CPU, else 0)", kind=int, low=0, high=1 << 16),
    _opt("inherit_registers", True, "start from the thread's registers, not zeros", kind=bool),
    _opt("stack", None, "the stack pointer to call with (default: stack_gap below the "
         "thread's sp, so the stack pages come from the dump)", hook=_addr),
    _opt("stack_gap", 0x2000, "bytes between the thread's sp and the emulated stack",
         kind=int, low=0, high=1 << 24),
    _opt("stack_size", 0x10000, "bytes of zero stack made up where the dump has none",
         kind=int, low=0x1000, high=1 << 26),
    _opt("patches", [], "memory patches: [{ where = \"tunable\", value = 1, size = 8 }] "
         "or { where = ..., bytes = \"90 90\" }", hook=_patches),
    _opt("budget", 10_000_000, "instructions at most before stopping", kind=int, low=1, high=10**10),
    _opt("breakpoints", [], "stop before executing any of these addresses", hook=_addrs),
    _opt("stop_at_return", True, "stop when the function returns to the sentinel", kind=bool),
    _opt("trace", False, "print every instruction (as -t)", kind=bool),
    _opt("flow", False, "print calls and returns, indented (as -F)", kind=bool),
    _opt("max_writes", 20, "memory writes listed in the summary", kind=int, low=0, high=100000),
)

_BY_NAME = {o.name: o for o in EMULATE_OPTIONS}
_PATCH_KEYS = {"where", "value", "size", "bytes"}


def defaults() -> dict[str, Any]:
    return {o.name: (o.default.copy() if isinstance(o.default, (list, dict)) else o.default)
            for o in EMULATE_OPTIONS}


def check(values: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Validated copies of values; ConfigError naming origin and the bad option."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        opt = _BY_NAME.get(name)
        if opt is None:
            raise ConfigError(f"{origin}: unknown emulate option '{name}'")
        out[name] = check_value(opt, value, f"{origin}: emulate option {name}")
    return out


def load_file(path: str) -> dict[str, Any]:
    """A ``-f file.toml``: either a bare table of options or one with an ``[emulate]`` table."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise ConfigError(f"{path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {err}") from None
    table = data.get("emulate", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [emulate] must be a table")
    return check(table, path)


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers override earlier ones; registers merge by name, patches add up."""
    out = defaults()
    for layer in layers:
        for name, value in layer.items():
            if name == "registers":
                out[name] = {**out[name], **value}
            elif name == "patches":
                out[name] = out[name] + list(value)
            else:
                out[name] = value
    return out


def _patch(p: Any, where: str) -> dict[str, Any]:
    if not isinstance(p, dict):
        raise ConfigError(f"{where}: each patch is a table {{ where = ..., value = ..., size = ... }}")
    extra = set(p) - _PATCH_KEYS
    if extra:
        raise ConfigError(f"{where}: unknown patch key '{sorted(extra)[0]}'")
    if "where" not in p:
        raise ConfigError(f"{where}: a patch needs 'where'")
    if ("bytes" in p) == ("value" in p):
        raise ConfigError(f"{where}: a patch needs either 'value' (with 'size') or 'bytes'")
    out: dict[str, Any] = {"where": _addr(p["where"], where)}
    if "bytes" in p:
        out["bytes"] = _hex_bytes(p["bytes"], where)
        return out
    size = p.get("size", 8)
    if isinstance(size, bool) or size not in (1, 2, 4, 8):
        raise ConfigError(f"{where}: patch size must be 1, 2, 4 or 8, not {size!r}")
    out["value"] = _addr(p["value"], where)
    out["size"] = size
    return out


def _hex_bytes(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise ConfigError(f"{where}: patch bytes are a hex string like \"90 90\"")
    try:
        return bytes.fromhex(text.replace(" ", ""))
    except ValueError:
        raise ConfigError(f"{where}: bad hex bytes {text!r}") from None


def describe() -> list[tuple[str, str, str]]:
    """(name, default, doc) rows: what ::emulate -h and the docs list."""
    return [(o.name, repr(o.default), o.doc) for o in EMULATE_OPTIONS]


def config_table(config: Config) -> dict[str, Any]:
    """The [emulate] table of the session's pmdb.toml, checked (empty when there is none)."""
    return check(config.table("emulate"), "pmdb.toml [emulate]")
