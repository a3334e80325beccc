"""::dis: disassemble the target's code, mdb style (``sym+off:  mnemonic  operands``)."""

from __future__ import annotations

from pmdb.commands import Context, dcmd
from pmdb.commands.args import number
from pmdb.disasm import Disassembler, Insn, disassembler_for
from pmdb.errors import CommandError, FaultError
from pmdb.output import Cell, Column, Hex, Symbol

from .source_lines import kernel_debuginfo, source_lines

WINDOW = 10                 # instructions either side of an address, as mdb's default
MAX_FUNCTION = 20_000       # a "function" bigger than this is a bad symbol size


@dcmd("dis", synopsis="disassemble instructions",
      opts={"n:": "count", "a": "plain", "C": "crash", "l": "lines", "r": "reverse", "x": "hexoff",
            "i": "intel"},
      usage="[-a] [-n count] | (crash) [-l] [-r] [-x] [-i] address|symbol [count]", example="lookup::dis")
def dis_cmd(ctx: Context, *where: str | int, count: str | int | None = None, plain: bool = False,
            crash: bool = False, lines: bool = False, reverse: bool = False, hexoff: bool = False,
            intel: bool = False) -> None:
    """Disassemble around an address (dot when none is given).

    At the start of a function (a symbol with a size) the whole function is
    shown; elsewhere a window of instructions before and after the address.
    ``addr,count::dis`` shows count instructions from addr; ``-n count`` sets
    the window (or, at a function start, how many instructions to show).
    ``-a`` prints plain addresses and leaves branch targets unnamed.
    Direct branch and call targets are named ``<sym+off>``; x86-64
    rip-relative operands get the address they refer to as a comment.
    crash's spelling, ``dis [-l] [-r] [-x] ADDRESS|SYMBOL [COUNT]`` (-C here), prints crash's
    layout: ``0xADDR <sym+off>:<TAB>insn`` in gdb's AT&T syntax (-i: Intel), a whole
    function for a function's name, else COUNT instructions (1 by default); -r: from the
    function's start up to ADDRESS; -l: the source file and line above each new line
    (with a debug vmlinux or module debug file); -x: hex offsets."""
    target = ctx.target
    if crash or lines or reverse or hexoff or intel:
        _crash_dis(ctx, where, lines=lines, reverse=reverse, hexoff=hexoff, intel=intel)
        return
    dis = disassembler_for(target)
    addr = ctx.addr if ctx.addr is not None else ctx.dot
    n = _count(count)
    if where:
        if ctx.addr is not None or len(where) > 2:
            raise CommandError("dis: an address before :: or as an argument (dis SYMBOL [COUNT]), not both")
        addr = ctx.value(where[0], what="address")
        if len(where) == 2:
            n = ctx.value(where[1], radix=10, what="count")
    if ctx.count_given:
        insns = dis.decode_count(addr, ctx.count)
    else:
        insns = _around(dis, addr, n)
    if ctx.piped:
        for insn in insns:
            ctx.emit(insn.address)
        return
    _print(ctx, dis, insns, plain)


def _crash_dis(ctx: Context, where: tuple[str | int, ...], *, lines: bool, reverse: bool, hexoff: bool,
               intel: bool) -> None:
    """crash's dis: see dis_cmd."""
    dis = disassembler_for(ctx.target)
    if ctx.addr is not None and not where:
        addr, n = ctx.addr, ctx.count if ctx.count_given else None
    elif len(where) in (1, 2) and ctx.addr is None:
        addr = ctx.value(where[0], what="address")
        n = ctx.value(where[1], radix=10, what="count") if len(where) == 2 else None
    else:
        raise CommandError("dis: usage: dis [-l] [-r] [-x] [-i] address|symbol [count]")
    hit = ctx.target.symbols.resolve(addr)
    sym = hit[0] if hit is not None and hit[0].size > 0 and hit[0].contains(addr) else None
    if reverse:
        start = sym.addr if sym is not None else addr
        insns = [i for i in dis.decode_range(start, addr + 1) if i.address <= addr]
    elif n is not None:
        insns = dis.decode_count(addr, max(n, 1))
    elif sym is not None and addr == sym.addr:
        size = (kernel_debuginfo(ctx).function_size(addr) if ctx.is_kernel else None) or sym.size
        insns = [i for i in dis.decode_range(addr, addr + min(size, MAX_FUNCTION * 16))[:MAX_FUNCTION]
                 if i.address < addr + size]
    else:
        insns = dis.decode_count(addr, 1)
    if ctx.piped:
        for insn in insns:
            ctx.emit(insn.address)
        return
    line_at = source_lines(ctx) if lines else None
    shown: tuple[str, int] | None = None
    for insn in insns:
        if line_at is not None:
            here = line_at(insn.address)
            if here is not None and here != shown:
                ctx.out.line(f"{here[0]}: {here[1]}")
            shown = here or shown
        text = crash_line(ctx, dis, insn, hexoff=hexoff, intel=intel)
        ctx.out.record({"address": Hex(insn.address), "instruction": text.split("\t", 1)[-1],
                        "bytes": insn.raw.hex()}, text=[text])


_FTRACE_NOP = bytes.fromhex("0f1f440000")      # the 5-byte nop ftrace leaves at a function's start


def crash_line(ctx: Context, dis: Disassembler, insn: Insn, *, hexoff: bool = False, intel: bool = False) -> str:
    """``0xADDR <sym+off>:<TAB>mnemonic operands`` as crash (gdb) prints it."""
    g = dis.gnu(insn, intel=intel)
    text = f"{g.mnemonic:<6} {g.operands}"
    if g.target is not None:
        text += f" {_angle(ctx, g.target, hexoff)}" if _angle(ctx, g.target, hexoff) else ""
    if g.rip_ref is not None:
        text += f"        # {g.rip_ref:#x}" + (f" {_angle(ctx, g.rip_ref, hexoff)}" if _angle(ctx, g.rip_ref, hexoff) else "")
    where = _angle(ctx, insn.address, hexoff)
    hit = ctx.target.symbols.resolve(insn.address)
    if hit is not None and hit[1] == 0 and insn.raw == _FTRACE_NOP:
        text += " [FTRACE NOP]"
    return f"{insn.address:#x}{' ' + where if where else ''}:\t{text}"


def _angle(ctx: Context, addr: int, hexoff: bool) -> str:
    """``<sym+off>`` (decimal offset, as gdb; hex with -x), or "" when no symbol holds addr.
    On a kernel, an address below the kernel's half (a per-CPU offset) is not named."""
    if ctx.is_kernel and addr < 1 << (8 * ctx.target.arch.ptr_size - 1):
        return ""
    hit = ctx.target.symbols.resolve(addr)
    if hit is None:
        return ""
    sym, off = hit
    if not off:
        return f"<{sym.name}>"
    return f"<{sym.name}+{off:#x}>" if hexoff else f"<{sym.name}+{off}>"


def _count(value: str | int | None) -> int | None:
    if value is None:
        return None
    count = value if isinstance(value, int) else number(value)
    if count is None:
        raise CommandError(f"dis: -n wants a number, not '{value}'")
    return count


def _around(dis: Disassembler, addr: int, n: int | None) -> list[Insn]:
    """The whole function at its start; else a window of n before and after addr."""
    hit = dis.target.symbols.resolve(addr)
    sym = hit[0] if hit is not None and hit[0].size > 0 and hit[0].contains(addr) else None
    if sym is not None and addr == sym.addr:
        if n is not None:
            return dis.decode_count(addr, n)
        return dis.decode_range(addr, addr + min(sym.size, MAX_FUNCTION * 16))[:MAX_FUNCTION]
    n = WINDOW if n is None else n
    before: list[Insn] = []
    if sym is not None:
        # variable-length code can only be decoded forwards: start at the function
        before = [i for i in dis.decode_range(sym.addr, addr) if i.address < addr]
    elif dis.fixed_width:
        start = max(addr - n * dis.fixed_width, 0)
        before = [i for i in _quiet_range(dis, start, addr) if i.address < addr]
    after = dis.decode_count(before[-1].end if before and before[-1].end > addr else addr, n)
    return before[-n:] + after if n else after


def _quiet_range(dis: Disassembler, start: int, end: int) -> list[Insn]:
    try:
        return dis.decode_range(start, end) if start < end else []
    except FaultError:
        return []


def _print(ctx: Context, dis: Disassembler, insns: list[Insn], plain: bool) -> None:
    symbols = ctx.target.symbols
    labels = [f"{i.address:x}" if plain else symbols.describe(i.address) for i in insns]
    texts = [dis.text(insn, symbolic=not plain) for insn in insns]
    width = max((len(label) for label in labels), default=0) + 3
    rows: list[list[Cell]] = [[Symbol(insn.address, label), text, insn.mnemonic,
                               text[len(insn.mnemonic):].strip(), insn.raw.hex()]
                              for insn, label, text in zip(insns, labels, texts, strict=True)]
    # mdb's layout: "label:" padded to the widest label and two blanks, then the instruction
    ctx.out.table(DIS_COLUMNS, rows, text=[f"{label + ':':<{width}}{text}".rstrip()
                                           for label, text in zip(labels, texts, strict=True)])


DIS_COLUMNS = (Column("address"), Column("instruction"), Column("mnemonic", text=False),
               Column("operands", text=False), Column("bytes", text=False))
