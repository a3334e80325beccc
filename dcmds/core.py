"""The dcmds about pmdb itself and about pipelines: help, walking, filtering, hexdump."""

from __future__ import annotations

import os
import string
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError, FaultError
from pmdb.memory.space import AddressSpace
from pmdb.output import Column, Hex

# a name and what it does, as mdb lists dcmds and walkers: "name - synopsis"
NAME_COLUMNS = (Column("name", "NAME"), Column("synopsis", "SYNOPSIS", gap=" - "))
ADDRESS_COLUMNS = (Column("address", "ADDRESS"),)


@dcmd("dcmds", addr="none", synopsis="list the available dcmds", example="::dcmds")
def dcmds_list(ctx: Context) -> None:
    """Every dcmd with its synopsis; aliases follow the name in parentheses, and the crash
    command that reaches it (typed without ``::``) after ``crash:``."""
    from pmdb.language.crash_aliases import CRASH_ALIASES

    crash_words: dict[str, list[str]] = {}
    for word, target in CRASH_ALIASES.items():
        crash_words.setdefault(target.split()[0], []).append(word)
    reg = ctx.registry
    rows = []
    for name in sorted(reg.dcmds):
        spec = reg.dcmds[name]
        label = name if not spec.aliases else f"{name} ({', '.join(spec.aliases)})"
        words = crash_words.get(name, [])
        synopsis = spec.synopsis + (f" [crash: {', '.join(words)}]" if words else "")
        rows.append([label, synopsis])
    ctx.out.table(NAME_COLUMNS, rows, header=False)


@dcmd("walkers", addr="none", synopsis="list the available walkers", example="::walkers")
def walkers_list(ctx: Context) -> None:
    """Every walker with its synopsis."""
    reg = ctx.registry
    ctx.out.table(NAME_COLUMNS, [[n, reg.walkers[n].synopsis] for n in sorted(reg.walkers)], header=False)


@dcmd("help", addr="none", synopsis="describe a dcmd or walker", example="::help findstack",
      usage="[-c] [dcmd | walker | crash command]", opts={"c": "crash"})
def help_cmd(ctx: Context, name: str = "", crash: bool = False) -> None:
    """Without a name, how to get started; with one, its synopsis, usage, description and
    example. A crash command word (``sys``) describes the dcmd it runs; -c (what crash's
    ``help`` passes) reads the name as crash's word first (``whatis`` is then crash's)."""
    from pmdb.language.crash_aliases import CRASH_ALIASES

    reg = ctx.registry
    if name in CRASH_ALIASES and (crash or not reg.has_dcmd(name)):
        name = CRASH_ALIASES[name].split()[0]
    if not name:
        _help_index(ctx)
        return
    name = name.lstrip(":")
    if reg.has_dcmd(name):
        spec = reg.dcmd(name)
        addr = {"none": "", "optional": "[addr]", "required": "addr"}[spec.addr]
        call = spec.name if spec.name.startswith("$") else f"::{spec.name}"
        _help_page(ctx, spec.name, spec.synopsis, f"{addr}{call} {spec.usage}".strip(), spec.help,
                   spec.example, spec.aliases)
        return
    if name in reg.walkers:
        w = reg.walker(name)
        _help_page(ctx, w.name, w.synopsis, f"[addr]::walk {w.name}", w.help, w.example, ())
        return
    from pmdb.language.crash_aliases import CRASH_COMMANDS

    if name in CRASH_COMMANDS:
        raise CommandError(f"'{name}' is a crash command not in pmdb yet (::dcmds lists what is)")
    raise CommandError(f"no dcmd or walker named '{name}'")


# the subjects ::help lists dcmds under: the module defining a dcmd -> its group
# (a dcmd from a module not named here, such as a plugin's, is listed under "Plugins")
HELP_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Help, pipelines and the language", ("core", "format")),
    ("Processes, threads and registers", ("proc", "linux_proc", "linux_ps_crash", "linux_task",
                                          "linux_whatthread")),
    ("Stacks", ("stack", "linux_stack", "linux_stack_text", "linux_eframes", "user_stacks")),
    ("Types and typed memory", ("types", "printf", "typedef", "crash_types", "crash_print", "lists",
                                "crash_tree")),
    ("Memory, symbols and code", ("crash_memory", "symbols", "disasm", "linux_mem", "linux_search")),
    ("Kernel memory and slabs", ("linux_memory", "linux_vm", "linux_kmem")),
    ("Kernel log, modules, files, network, scheduler", ("linux_log", "linux_modules", "linux_files",
                                                        "linux_net", "linux_runq", "linux_sys")),
    ("Emulation", ("emulate",)),
)
HELP_COLUMNS = (Column("group", text=False), Column("name", "NAME"), Column("crash", "CRASH"),
                Column("synopsis", "SYNOPSIS", gap="  "))


def _help_index(ctx: Context) -> None:
    """Every dcmd by subject (with the crash words that run it), then every walker."""
    from pmdb.language.crash_aliases import CRASH_ALIASES

    reg = ctx.registry
    crash_words: dict[str, list[str]] = {}
    for word, target in CRASH_ALIASES.items():
        crash_words.setdefault(target.split()[0], []).append(word)
    group_of = {module: title for title, modules in HELP_GROUPS for module in modules}
    groups: dict[str, list[list[Any]]] = {title: [] for title, _ in HELP_GROUPS}
    for name in sorted(reg.dcmds):
        spec = reg.dcmds[name]
        title = group_of.get(spec.origin.rpartition(".")[2], "Plugins")
        call = name if name.startswith("$") else f"::{name}"
        label = call if not spec.aliases else f"{call} ({', '.join(spec.aliases)})"
        groups.setdefault(title, []).append([title, label, ", ".join(crash_words.get(name, [])),
                                             spec.synopsis])
    walkers = "Walkers (addr::walk NAME)"
    groups[walkers] = [[walkers, n, "", reg.walkers[n].synopsis] for n in sorted(reg.walkers)]
    out = ctx.out
    out.line("Run a dcmd as [address][,count]::name [args] (or a crash word: ps, bt, kmem -s ...);")
    out.line("'|' hands addresses to the next dcmd. ::help NAME describes one; ::formats lists /fmt verbs.")
    for title, rows in groups.items():
        if rows:
            out.line("")
            out.line(title)
            out.table(HELP_COLUMNS, rows, header=False)


def _help_page(ctx: Context, name: str, synopsis: str, usage: str, text: str, example: str,
               aliases: tuple[str, ...]) -> None:
    out = ctx.out
    out.line("NAME")
    out.line(f"  {name} - {synopsis}")
    out.line("")
    out.line("SYNOPSIS")
    out.line(f"  {usage}")
    if aliases:
        out.line("")
        out.line("ALIASES")
        out.line("  " + ", ".join(aliases))
    out.line("")
    out.line("DESCRIPTION")
    for para in text.splitlines():
        out.line(f"  {para}".rstrip())
    if example:
        out.line("")
        out.line("EXAMPLE")
        out.line(f"  > {example}")


@dcmd("walk", synopsis="walk a data structure, printing or handing on addresses",
      example="::walk thread | ::findstack", usage="name [variable] [walker args...]")
def walk(ctx: Context, name: str, *args: Any) -> None:
    """Run a walker from addr (or from its default start). Piped, the addresses go to the next
    dcmd, with their type when the walker knows it; otherwise they are printed one per line."""
    for h in ctx.walk(name, ctx.addr, args):
        if ctx.piped:
            ctx.emit(h.addr, h.type)
        else:
            ctx.out.table(ADDRESS_COLUMNS, [[Hex(h.addr)]], header=False)


@dcmd("grep", addr="required", synopsis="hand on the address when an expression is non-zero",
      example="::walk thread | ::grep .==0t1234 | ::findstack", usage="expression")
def grep(ctx: Context, *words: Any) -> None:
    """Evaluates the expression with dot set to each input address; the address goes on (or is
    printed) only when the value is non-zero."""
    if not words:
        raise CommandError("grep: an expression is needed")
    value = _expression_value(ctx, words)
    if value:
        _pass_on(ctx)


@dcmd("head", addr="required", synopsis="hand on only the first addresses of a pipe",
      example="::walk thread | ::head -n 2 | ::findstack", opts={"n:": "count"}, usage="[-n count]")
def head(ctx: Context, count: Any = 10) -> None:
    """The first count (default 10) addresses of the pipe go on; the rest are dropped."""
    limit = ctx.value(count, radix=10, what="count")
    seen = ctx.state.get("seen", 0)
    if seen < limit:
        _pass_on(ctx)
    ctx.state["seen"] = seen + 1


@dcmd("dump", addr="required", synopsis="hex and ASCII dump of memory", example="main,40::dump",
      opts={"q": "no_ascii"}, usage="[-q]")
def dump(ctx: Context, no_ascii: bool = False) -> None:
    """addr,count::dump shows count bytes (default 16) in rows of 16, with ASCII on the right;
    an unreadable row is marked instead of ending the dump."""
    addr = ctx.require_addr()
    length = ctx.count if ctx.count_given else 16
    start = addr & ~0xF
    end = addr + max(length, 1)
    width = len(f"{end:x}")
    header = " " * (width + 3) + "\\/ 1 2 3  4 5 6 7  8 9 a b  c d e f"
    ctx.out.line(header + ("  v123456789abcdef" if not no_ascii else ""))
    mem = ctx.target.memory
    for row in range(start, end, 16):
        data: bytes | list[int | None]
        try:
            data = mem.read(row, 16)
        except FaultError:
            data = _read_partial(mem, row, 16)
        ctx.out.line(_dump_row(row, data, addr, end, width, no_ascii))


def _read_partial(mem: AddressSpace, addr: int, n: int) -> list[int | None]:
    out: list[int | None] = []
    for i in range(n):
        try:
            out.append(mem.read(addr + i, 1)[0])
        except FaultError:
            out.append(None)
    return out


_PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")


def _dump_row(row: int, data: bytes | list[int | None], first: int, end: int, width: int, no_ascii: bool) -> str:
    hexes, chars = [], []
    for i in range(16):
        a = row + i
        b = data[i] if i < len(data) else None
        shown = first <= a < end
        hexes.append("  " if not shown else ("??" if b is None else f"{b:02x}"))
        ch = chr(b) if b is not None else "?"
        chars.append(" " if not shown else (ch if ch in _PRINTABLE else "."))
    groups = " ".join("".join(hexes[i:i + 4]) for i in range(0, 16, 4))
    line = f"{row:>{width}x}:  {groups}"
    return line if no_ascii else f"{line}  {''.join(chars)}"


@dcmd("$<", synopsis="run a file of commands, or a dcmd spelled as an mdb macro",
      example="$<cmds.txt", usage="file | macro")
def run_macro(ctx: Context, name: str) -> None:
    """Runs each line of the file with dot set to addr. When no such file exists and name is a
    dcmd, ``addr$<name`` runs that dcmd at addr (mdb's macros such as $<bufctl_audit)."""
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as err:
            raise CommandError(f"{name}: {err.strerror}") from None
        if ctx.addr is not None:
            ctx.set_dot(ctx.addr)
        _run_file(ctx, name, os.path.realpath(path), lines)
        return
    if ctx.registry.has_dcmd(name):
        ctx.invoke(name)
        return
    raise CommandError(f"{name}: no such file or macro")


def _run_file(ctx: Context, name: str, real: str, lines: list[str]) -> None:
    """A command file's lines; one error naming the chain when a file includes itself
    (directly or through others), instead of recursing until Python gives up. A command
    that fails has said so already: the file's own failure adds no line."""
    running: list[tuple[str, str]] = ctx.store("core.macro_files", list)
    if any(r == real for _, r in running):
        chain = " -> ".join([n for n, _ in running] + [name])
        raise CommandError(f"{name}: the command file includes itself ({chain})")
    running.append((name, real))
    try:
        ctx.run_script(lines)
    finally:
        running.pop()


def _expression_value(ctx: Context, words: tuple[Any, ...]) -> int:
    if len(words) == 1 and isinstance(words[0], int):
        return words[0]
    return ctx.value(" ".join(str(w) if not isinstance(w, int) else f"0x{w:x}" for w in words))


def _pass_on(ctx: Context) -> None:
    addr = ctx.require_addr()
    if ctx.piped:
        ctx.emit(addr, ctx.type)
    else:
        ctx.out.table(ADDRESS_COLUMNS, [[Hex(addr)]], header=False)

