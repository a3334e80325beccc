"""The ``[emulate]`` options: one declarative table, read from pmdb.toml, ``-f file.toml`` and flags.

pmdb/config.py leaves the ``emulate`` table to this module (OWNED_TABLES), because
its values are not plain scalars: registers and patches are tables, and addresses
may be expressions (``"tunable"``, ``"g_table+8"``) that only a session can
evaluate. Checking here is structural (names, types, bounds); expressions are
evaluated later, when the call is set up. Precedence: pmdb.toml < -f file < flags.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pmdb.errors import CommandError

# "addr" values are an integer or an expression string; "addrs" a list of them
_KINDS = ("addr", "addrs", "int", "bool", "str", "regs", "patches")


@dataclass(frozen=True)
class EmuOption:
    name: str
    kind: str
    default: Any
    doc: str
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()


EMULATE_OPTIONS: tuple[EmuOption, ...] = (
    EmuOption("function", "addr", None, "the function to call: a symbol or expression (FUNC::emulate)"),
    EmuOption("pc", "addr", None, "start here instead of at a function (no arguments are placed)"),
    EmuOption("npc", "addr", None, "SPARC: the next pc (default pc+4)"),
    EmuOption("args", "addrs", [], "arguments, placed by the calling convention"),
    EmuOption("registers", "regs", {}, "registers by name: { rdi = 5, \"%g7\" = \"0x330380\" }"),
    EmuOption("thread_pointer", "addr", None,
              "the thread pointer: fs_base on x86-64, %g7 on SPARC (default: the thread's)"),
    EmuOption("thread", "int", None, "start from this thread's registers (default: the current one)"),
    EmuOption("cpu", "int", None, "kernel: the CPU the call runs on: its per-CPU base in GS and its "
              "current task (default: the thread's CPU, else the panic CPU, else 0)", 0, 1 << 16),
    EmuOption("inherit_registers", "bool", True, "start from the thread's registers, not zeros"),
    EmuOption("stack", "addr", None, "the stack pointer to call with (default: stack_gap below the "
              "thread's sp, so the stack pages come from the dump)"),
    EmuOption("stack_gap", "int", 0x2000, "bytes between the thread's sp and the emulated stack",
              0, 1 << 24),
    EmuOption("stack_size", "int", 0x10000, "bytes of zero stack made up where the dump has none",
              0x1000, 1 << 26),
    EmuOption("patches", "patches", [], "memory patches: [{ where = \"tunable\", value = 1, size = 8 }] "
              "or { where = ..., bytes = \"90 90\" }"),
    EmuOption("budget", "int", 10_000_000, "instructions at most before stopping", 1, 10**10),
    EmuOption("breakpoints", "addrs", [], "stop before executing any of these addresses"),
    EmuOption("stop_at_return", "bool", True, "stop when the function returns to the sentinel"),
    EmuOption("trace", "bool", False, "print every instruction (as -t)"),
    EmuOption("flow", "bool", False, "print calls and returns, indented (as -F)"),
    EmuOption("max_writes", "int", 20, "memory writes listed in the summary", 0, 100000),
)

_BY_NAME = {o.name: o for o in EMULATE_OPTIONS}
_PATCH_KEYS = {"where", "value", "size", "bytes"}


def defaults() -> dict[str, Any]:
    return {o.name: (o.default.copy() if isinstance(o.default, (list, dict)) else o.default)
            for o in EMULATE_OPTIONS}


def check(values: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Validated copies of values; CommandError naming origin and the bad option."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        opt = _BY_NAME.get(name)
        if opt is None:
            raise CommandError(f"{origin}: unknown emulate option '{name}'")
        out[name] = _check(opt, value, origin)
    return out


def load_file(path: str) -> dict[str, Any]:
    """A ``-f file.toml``: either a bare table of options or one with an ``[emulate]`` table."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise CommandError(f"{path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise CommandError(f"{path}: {err}") from None
    table = data.get("emulate", data)
    if not isinstance(table, dict):
        raise CommandError(f"{path}: [emulate] must be a table")
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


def _check(opt: EmuOption, value: Any, origin: str) -> Any:
    where = f"{origin}: emulate option {opt.name}"
    if opt.kind == "addr":
        return _addr(value, where)
    if opt.kind == "addrs":
        if not isinstance(value, list):
            raise CommandError(f"{where}: expected a list, got {value!r}")
        return [_addr(v, where) for v in value]
    if opt.kind in ("int", "bool", "str"):
        return _scalar(opt, value, where)
    if opt.kind == "regs":
        if not isinstance(value, dict):
            raise CommandError(f"{where}: expected a table of register = value")
        return {str(k): _addr(v, f"{where}.{k}") for k, v in value.items()}
    return [_patch(p, where) for p in (value if isinstance(value, list) else [value])]


def _scalar(opt: EmuOption, value: Any, where: str) -> Any:
    want: type = {"int": int, "bool": bool, "str": str}[opt.kind]
    if isinstance(value, bool) != (want is bool) or not isinstance(value, want):
        raise CommandError(f"{where}: expected {'true or false' if want is bool else want.__name__}, "
                           f"got {value!r}")
    number: Any = value
    if want is int and (opt.low is not None and number < opt.low or opt.high is not None and number > opt.high):
        raise CommandError(f"{where}: {value} is outside [{opt.low}, {opt.high}]")
    if opt.choices and value not in opt.choices:
        raise CommandError(f"{where}: {value!r} is not one of {', '.join(opt.choices)}")
    return value


def _addr(value: Any, where: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise CommandError(f"{where}: expected an address (integer or expression), got {value!r}")
    if isinstance(value, int) and value < 0:
        raise CommandError(f"{where}: {value} is negative")
    return value


def _patch(p: Any, where: str) -> dict[str, Any]:
    if not isinstance(p, dict):
        raise CommandError(f"{where}: each patch is a table {{ where = ..., value = ..., size = ... }}")
    extra = set(p) - _PATCH_KEYS
    if extra:
        raise CommandError(f"{where}: unknown patch key '{sorted(extra)[0]}'")
    if "where" not in p:
        raise CommandError(f"{where}: a patch needs 'where'")
    if ("bytes" in p) == ("value" in p):
        raise CommandError(f"{where}: a patch needs either 'value' (with 'size') or 'bytes'")
    out: dict[str, Any] = {"where": _addr(p["where"], where)}
    if "bytes" in p:
        out["bytes"] = _hex_bytes(p["bytes"], where)
        return out
    size = p.get("size", 8)
    if isinstance(size, bool) or size not in (1, 2, 4, 8):
        raise CommandError(f"{where}: patch size must be 1, 2, 4 or 8, not {size!r}")
    out["value"] = _addr(p["value"], where)
    out["size"] = size
    return out


def _hex_bytes(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise CommandError(f"{where}: patch bytes are a hex string like \"90 90\"")
    try:
        return bytes.fromhex(text.replace(" ", ""))
    except ValueError:
        raise CommandError(f"{where}: bad hex bytes {text!r}") from None


def describe() -> list[tuple[str, str, str]]:
    """(name, default, doc) rows: what ::emulate -h and the docs list."""
    return [(o.name, repr(o.default), o.doc) for o in EMULATE_OPTIONS]


def config_table(config: Any) -> dict[str, Any]:
    """The [emulate] table of the session's pmdb.toml, checked (empty when there is none)."""
    getter = getattr(config, "table", None)
    raw = getter("emulate") if getter is not None else {}
    return check(raw or {}, "pmdb.toml [emulate]")
