"""Process-level dcmds: ::status, ::threads, ::mappings, ::regs ($r).

They ask the target's OS model, so they work for any target whose model
provides threads, mappings and status rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from pmdb.arch import Arch
from pmdb.commands import Context, dcmd
from pmdb.output import Cell, Column, Flag, Hex, Symbol
from pmdb.threads import Thread


@dcmd("status", addr="none", synopsis="print a summary of the target",
      example="::status")
def status(ctx: Context) -> None:
    """What was debugged and how it died. A user core: the program, its arguments, the pid,
    the signal and the faulting address, the number of threads, and whether the executable
    found on disk matches the core (by build-id). A kernel dump: crash's ``sys`` fields
    (kernel, dump file, CPUs, date, uptime, load average, tasks, nodename, release,
    version, machine, memory, panic message) and the panic task. Also spelled ``sys``."""
    rows = [(key, _status_cell(key, value)) for key, value in ctx.target.os.status()]
    # kernel dumps: crash's sys layout, keys right-aligned to the colon
    ctx.out.fields(rows, right=12 if ctx.is_kernel else None)


# the status fields that hold an address (and whether their text spells it with 0x)
_ADDRESS_FIELDS = {"TASK": False, "fault address": True}


def _status_cell(key: str, value: str) -> Cell:
    """A status value as a cell: the address fields typed, so JSON spells them as addresses."""
    if key not in _ADDRESS_FIELDS:
        return value
    try:
        return Hex(int(value, 16), prefix=_ADDRESS_FIELDS[key])
    except ValueError:
        return value


@dcmd("threads", addr="optional", synopsis="list the threads",
      example="::threads", usage="[tid]")
def threads(ctx: Context) -> None:
    """Every thread (or the one whose id is given as the address): its 1-based index,
    thread id, the pc as symbol+offset, the signal it took and its name. The current
    thread is marked with '*'. In a pipe, hands on thread ids (for ::findstack, ::regs)."""
    target = ctx.target
    chosen = [target.thread_by_id(ctx.addr)] if ctx.addr is not None else list(target.threads())
    if ctx.piped:
        for t in chosen:
            ctx.emit(t.id)
        return
    cur = target.current_thread
    rows: list[list[Cell]] = []
    for t in chosen:
        pc = t.registers.get(target.arch.pc)
        pc_cell = Symbol(pc, target.describe(pc)) if pc is not None else None
        rows.append([Flag(t is cur), t.index, t.id, pc_cell, _signal(target.arch, t), t.name])
    ctx.out.table(THREAD_COLUMNS, rows)


THREAD_COLUMNS = (Column("current"), Column("index", "ID", ">"), Column("tid", "TID", ">"),
                  Column("pc", "PC"), Column("signal", "SIGNAL"), Column("name", "NAME"))
MAPPING_COLUMNS = (Column("start", "START", ">"), Column("end", "END", ">"), Column("perms", "PERMS"),
                   Column("offset", "OFFSET", ">"), Column("path", "PATH"), Column("note", "NOTE"))


def _signal(arch: Arch, t: Thread) -> str:
    from pmdb.os.user.notes import signal_name

    return signal_name(t.signal, arch) if t.signal else ""


@dcmd("mappings", addr="optional", synopsis="list the memory mappings",
      example="::mappings", usage="[addr]")
def mappings(ctx: Context) -> None:
    """Every mapping of the address space (or the one containing the address): start,
    end, permissions, file offset and the file it maps. Mappings whose bytes the dump
    left out (e.g. file-backed text in a kernel core) are marked; their bytes are read
    from the file when it is found. In a pipe, hands on the start addresses."""
    maps = list(ctx.target.os.mappings())
    if ctx.addr is not None:
        maps = [m for m in maps if m.start <= ctx.addr < m.end]
        if not maps:
            ctx.out.line(f"{ctx.addr:#x} is not in any mapping")
            return
    if ctx.piped:
        for m in maps:
            ctx.emit(m.start)
        return
    w = ctx.target.arch.ptr_size * 2
    rows = [[Hex(m.start, w), Hex(m.end, w), m.perms, Hex(m.offset), m.path or "[anon]",
             "" if m.in_dump else "not in dump"] for m in maps]
    ctx.out.table(MAPPING_COLUMNS, rows)


@dcmd("regs", addr="optional", aliases=("$r",), opts={"a": "every"},
      synopsis="print the registers of a thread", example="::regs -a", usage="[-a] [tid]")
def regs(ctx: Context, every: bool = False) -> None:
    """The general registers of the current thread (or of the thread whose id is given as
    the address), as they were when the dump was taken, in two columns; the pc is
    followed by its symbol. SPARC shows the g, o, l and i registers, pc, npc, y, tstate.
    -a adds an x86 user core's x87, SSE and AVX registers (NT_PRFPREG, NT_X86_XSTATE) by
    gdb's names (``info all-registers``): st0-7 as their 80 raw bits and their value, the
    x87 control registers, xmm, mxcsr and ymm in hex."""
    target = ctx.target
    thread = target.thread_by_id(ctx.addr) if ctx.addr is not None else target.current_thread
    values = target.registers(thread)
    arch = target.arch
    record: dict[str, Cell] = {name: Hex(values[name]) for name in arch.regs if name in values}
    text = format_registers(arch, values, target.describe)
    reader = getattr(target.os, "fp_registers", None)
    fp = reader(thread) if every and reader is not None and thread is not None else {}
    if fp:
        record.update({name: Hex(value) for name, value in fp.items()})
        text += format_fp_registers(arch, fp)
    ctx.out.record(record, text=text)


def format_fp_registers(arch: Arch, fp: dict[str, int]) -> list[str]:
    """One ``%name = 0x...`` line a register, in gdb's order; st registers add their value."""
    from pmdb.arch.fpregs import fp_register_names, st_value

    names = [n for n in fp_register_names(arch.bits, "ymm0" in fp) if n in fp]
    width = max(len(n) for n in names)
    out = []
    for name in names:
        value = fp[name]
        if name.startswith("st"):
            out.append(f"%{name:<{width}} = 0x{value:020x} ({st_value(value):.17g})")
        elif name.startswith(("xmm", "ymm")):
            out.append(f"%{name:<{width}} = 0x{value:0{32 if name[0] == 'x' else 64}x}")
        else:
            out.append(f"%{name:<{width}} = {value:#x}")
    return out


def format_registers(arch: Arch, values: dict[str, int], describe: object) -> list[str]:
    """mdb's $r layout: ``%name = 0x...`` in two columns, left then right."""
    names = [n for n in arch.regs if n in values]
    if arch.name == "sparc64":
        pairs = _sparc_pairs(names)
    else:
        half = (len(names) + 1) // 2
        pairs = [(names[i], names[half + i] if half + i < len(names) else None) for i in range(half)]
    lwidth = max((len(a) for a, _ in pairs), default=0)
    rwidth = max((len(b) for _, b in pairs if b), default=0)
    digits = arch.ptr_size * 2
    out = []
    for left, right in pairs:
        text = _reg_cell(arch, left, values[left], lwidth, digits, describe)
        if right:
            text = text.ljust(lwidth + digits + 8) + " " + _reg_cell(arch, right, values[right], rwidth,
                                                                      digits, describe)
        out.append(text.rstrip())
    return out


def _sparc_pairs(names: Sequence[str]) -> list[tuple[str, str | None]]:
    """g|l then o|i side by side (as mdb shows a window), then the control registers,
    pc and npc alone on their lines so their symbols fit."""
    have = set(names)
    pairs: list[tuple[str, str | None]] = []
    for a, b in (("g", "l"), ("o", "i")):
        pairs += [(f"{a}{i}", f"{b}{i}") for i in range(8) if f"{a}{i}" in have]
    rest = [n for n in names if n[0] not in "goli" or not n[1:].isdigit()]
    lone = [n for n in rest if n in ("pc", "npc")]
    paired = [n for n in rest if n not in lone]
    pairs += [(paired[i], paired[i + 1] if i + 1 < len(paired) else None) for i in range(0, len(paired), 2)]
    return pairs + [(n, None) for n in lone]


def _reg_cell(arch: Arch, name: str, value: int, width: int, digits: int, describe: object) -> str:
    text = f"%{name:<{width}} = 0x{value:0{digits}x}"
    if name in (arch.pc, "npc") and callable(describe):
        sym = describe(value)
        if not sym.startswith("0x"):
            text += f" {sym}"
    return text
