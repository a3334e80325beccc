"""::dis: disassemble the target's code, mdb style (``sym+off:  mnemonic  operands``)."""

from __future__ import annotations

from pmdb.commands import Context, dcmd
from pmdb.commands.args import number
from pmdb.disasm import Disassembler, Insn, disassembler_for
from pmdb.errors import CommandError, FaultError
from pmdb.output import Cell, Column, Symbol

WINDOW = 10                 # instructions either side of an address, as mdb's default
MAX_FUNCTION = 20_000       # a "function" bigger than this is a bad symbol size


@dcmd("dis", synopsis="disassemble instructions", opts={"n:": "count", "a": "plain"},
      usage="[-a] [-n count] | (crash) address|symbol [count]", example="lookup::dis")
def dis_cmd(ctx: Context, *where: str | int, count: str | int | None = None, plain: bool = False) -> None:
    """Disassemble around an address (dot when none is given).

    At the start of a function (a symbol with a size) the whole function is
    shown; elsewhere a window of instructions before and after the address.
    ``addr,count::dis`` shows count instructions from addr; ``-n count`` sets
    the window (or, at a function start, how many instructions to show).
    ``-a`` prints plain addresses and leaves branch targets unnamed.
    Direct branch and call targets are named ``<sym+off>``; x86-64
    rip-relative operands get the address they refer to as a comment.
    crash's spelling, ``dis ADDRESS|SYMBOL [COUNT]``, names the start as an argument (in
    pmdb's layout for now)."""
    target = ctx.target
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
