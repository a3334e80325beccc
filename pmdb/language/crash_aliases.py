"""Crash's command spellings (``ps``, ``sys``, ``log``, ``struct``) on a pmdb line.

mdb's grammar reads a bare word as a symbol, so ``files`` alone would evaluate
the kernel symbol ``files`` and print nothing. Before parsing, a line whose first
word is one of crash's commands is rewritten into the pmdb dcmd it stands for,
even when the target has a symbol of that name (``files=K`` or ``files/K`` still
read the symbol: only a word followed by a blank, ``|`` or the end is a command).
A crash command pmdb does not have yet is an error naming it, never an
expression. Everything else is left exactly as typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pmdb.errors import CommandError
from pmdb.language.lexer import quoted_end

# crash's word -> the pmdb dcmd it runs
CRASH_ALIASES: dict[str, str] = {
    "ps": "ps -C",         # crash's meaning of -t (run times; ::ps -t is mdb's threads)
    "sys": "status",
    "log": "log",          # crash's format; ::msgbuf is mdb's
    "vtop": "vtop -C",
    "struct": "struct",    # crash's layout (dcmds/crash_types.py); ::print is mdb's
    "union": "union",
    "whatis": "ptype",     # a type's definition; mdb's ::whatis names an address
    "bt": "bt",            # crash's layout on a kernel, $c's on a user core (dcmds/stack.py)
    "foreach": "foreach",  # foreach [tasks] bt [-f] (dcmds/linux_stack.py)
    "runq": "runq",        # crash's layout (dcmds/linux_runq.py); ::cpuinfo is mdb's
    "kmem": "kmem",        # kmem -s / -S cache / addr (dcmds/linux_kmem.py)
    "list": "list",        # crash's syntax when no address comes before :: (dcmds/lists.py)
    "help": "help -c",     # crash's words first (help whatis is crash's whatis)
    "ptype": "ptype",      # gdb's word, which crash passes to gdb
    "rd": "rd",            # dcmds/crash_memory.py
    "sym": "sym",
    "mod": "mod",          # dcmds/linux_modules.py
    "search": "search",    # dcmds/linux_search.py
    "task": "task",        # dcmds/linux_task.py
    "set": "set -c",       # crash's reading of a pid: decimal
    "vm": "vm",            # dcmds/linux_vm.py
    "tree": "tree",        # dcmds/crash_tree.py
    "files": "files",      # dcmds/linux_files.py (::pfiles is mdb's)
    "mount": "mount",
    "net": "net",          # dcmds/linux_net.py
    "irq": "irq",          # dcmds/linux_sys.py: irq, dev, swap, timer, sig
    "dev": "dev",
    "swap": "swap",
    "timer": "timer",
    "sig": "sig",
    "p": "p",              # dcmds/crash_print.py
}

# crash's other commands (crash 8's ``help``): known words, so they are never read as symbols
CRASH_COMMANDS = frozenset({
    "*", "alias", "ascii", "bpf", "btop", "dev", "dis", "eval", "exit", "extend", "files",
    "fuser", "gdb", "ipcs", "irq", "mach", "mod", "mount", "net", "p", "pte", "ptob", "ptov",
    "q", "rd", "repeat", "sbitmapq", "search", "set", "sig", "swap", "sym", "task", "timer",
    "tree", "union", "vm", "waitq", "whatis", "wr", *CRASH_ALIASES})

# gdb's p/x and p/d (crash passes them to gdb): the p dcmd's -X and -D
_GDB_FORMAT = re.compile(r"^(\s*)p/([xd])(?=\s)")
_FIRST = re.compile(r"^(\s*)([A-Za-z_]\w*)(?=\s|$|\|)(.*)$", re.S)


def rewrite(line: str, *, has_dcmd: Callable[[str], bool]) -> str:
    """The line to parse: each command of it (``;`` separates them, as in mdb) in a crash
    spelling becomes ``::dcmd args``; anything else unchanged. CommandError for a crash
    command pmdb lacks."""
    return ";".join(_rewrite_one(part, has_dcmd) for part in _commands(line))


def _commands(line: str) -> list[str]:
    """The line cut at each ``;`` outside quotes, up to a shell escape or a ``//`` comment
    (which keep the rest of the line whole)."""
    parts, start, i = [], 0, 0
    while i < len(line):
        ch = line[i]
        if ch in "'\"":
            end = quoted_end(line, i)
            if end < 0:
                break
            i = end
            continue
        if ch == "!" or line.startswith("//", i):
            break
        if ch == ";":
            parts.append(line[start:i])
            start = i + 1
        i += 1
    return [*parts, line[start:]]


def _rewrite_one(line: str, has_dcmd: Callable[[str], bool]) -> str:
    m = _FIRST.match(_GDB_FORMAT.sub(lambda g: f"{g[1]}p -{g[2].upper()}", line, count=1))
    if m is None:
        return line
    indent, word, rest = m.groups()
    if word not in CRASH_COMMANDS:
        return line
    dcmd = CRASH_ALIASES.get(word, word)
    if not has_dcmd(dcmd.split()[0]):
        raise CommandError(f"{word}: crash's command is not in pmdb yet (::dcmds lists what is)")
    return f"{indent}::{dcmd}{_shell_pipe(rest)}"


def _shell_pipe(rest: str) -> str:
    """crash pipes a command's output to the shell (``ps | grep bash``): after a crash
    spelling, a ``|`` before a bare word (not ``::dcmd``, not a crash command) becomes
    mdb's ``!``; ``grep``, ``head``, ``wc`` there are the shell's, as in crash."""
    i = 0
    while i < len(rest):
        ch = rest[i]
        if ch in "'\"":
            end = quoted_end(rest, i)
            if end < 0:
                return rest
            i = end
            continue
        if ch == "|":
            after = rest[i + 1:].lstrip()
            word = re.match(r"[^\s|]*", after)[0]   # type: ignore[index]
            if word and not word.startswith(("::", "$", ">")) and word not in CRASH_COMMANDS:
                return f"{rest[:i]}!{rest[i + 1:]}"
        i += 1
    return rest
