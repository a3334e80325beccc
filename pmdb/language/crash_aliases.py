"""Crash's command spellings (``ps``, ``sys``, ``log``, ``struct``) on a pmdb line.

mdb's grammar reads a bare word as a symbol, so ``ps`` alone would evaluate
the symbol ``ps``. Before parsing, a line whose first word is one of crash's
commands (and not a symbol of the target, nor a number) is rewritten into
the pmdb dcmd it stands for; everything else is left exactly as typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# crash's word -> the pmdb dcmd it runs
CRASH_ALIASES: dict[str, str] = {
    "ps": "ps",
    "sys": "status",
    "log": "log",          # crash's format; ::msgbuf is mdb's
    "vtop": "vtop",
    "struct": "print",
    "bt": "bt",            # crash's layout on a kernel, $c's on a user core (dcmds/stack.py)
    "foreach": "foreach",  # foreach [tasks] bt [-f] (dcmds/linux_stack.py)
    "runq": "cpuinfo",
    "kmem": "kmem",        # kmem -s / -S cache / addr (dcmds/linux_kmem.py)
}

_FIRST = re.compile(r"^(\s*)([A-Za-z_]\w*)(?=\s|$|\|)(.*)$", re.S)
_ADDRESS = re.compile(r"^(0x)?[0-9a-fA-F]+$")


def rewrite(line: str, *, is_symbol: Callable[[str], bool], has_dcmd: Callable[[str], bool]) -> str:
    """The line to parse: a crash spelling becomes ``::dcmd args``; anything else unchanged."""
    m = _FIRST.match(line)
    if m is None:
        return line
    indent, word, rest = m.groups()
    dcmd = CRASH_ALIASES.get(word)
    if dcmd is None or is_symbol(word) or not has_dcmd(dcmd):
        return line
    if word == "struct":
        return indent + _struct(rest.strip())
    return f"{indent}::{dcmd}{rest}"


def _struct(args: str) -> str:
    """crash's ``struct TYPE[.m1,m2] [ADDR|SYMBOL]`` as ``ADDR::print struct TYPE m1 m2``."""
    pipe = ""
    if "|" in args:
        args, pipe = args.split("|", 1)
        pipe = " |" + pipe
    words = args.split()
    if not words:
        return "::print" + pipe
    spec, where = words[0], words[1:]
    type_name, _, members = spec.partition(".")
    names = " ".join(m for m in members.split(",") if m)
    addr = ""
    if where:
        addr = where[0]
        if _ADDRESS.match(addr) and not addr.lower().startswith("0x"):
            addr = "0x" + addr      # crash's addresses are hex without a prefix, as pmdb's are
    call = f"::print struct {type_name} {names}".rstrip()
    return f"{addr}{call}{pipe}"
