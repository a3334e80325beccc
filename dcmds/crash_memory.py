"""crash's ``rd`` and ``sym``, in crash's spelling and output layout.

``rd`` shows memory as crash 8 does: the address right-justified, then 2, 4, 8 or 16
entries of 64, 32, 16 or 8 bits (hex, or decimal with -d/-D, or symbols with -s), then
the line's bytes as ASCII. ``sym`` names an address (``ADDR (t) name+off [module]``, the
offset in decimal) or gives a name's address, as crash's show_symbol prints them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError, FaultError, LimitError, SymbolError
from pmdb.os.linux.debuginfo import LineAt
from pmdb.output import Hex
from pmdb.symbols.table import Symbol

from .source_lines import source_lines

RD_OPTS = {"8": "bits8", "s": "symbols",
           "S": "symbols", "d": "signed", "D": "unsigned", "x": "no_ascii", "a": "ascii",
           "p": "physical", "u": "user", "o:": "offset", "e:": "end"}
RD_USAGE = "[-8|-16|-32|-64] [-s|-S] [-d|-D] [-x] [-a] [-p|-u] [-o offset] [-e end] address|symbol [count]"
PER_LINE = {8: 2, 4: 4, 2: 8, 1: 16}                   # entries per line by entry size
DECIMAL = {8: (15, 20), 4: (12, 12), 2: (5, 5), 1: (3, 3)}   # (signed, unsigned) widths
ASCII_PER_LINE = 60


SIZE_WORDS = {"-8": 1, "-16": 2, "-32": 4, "-64": 8}


def _take_size(args: tuple[Any, ...]) -> tuple[list[Any], int | None]:
    """crash's -8/-16/-32/-64 (which a getopt reading would take for negative numbers)."""
    sizes = [SIZE_WORDS[a] for a in args if isinstance(a, str) and a in SIZE_WORDS]
    return [a for a in args if not (isinstance(a, str) and a in SIZE_WORDS)], (sizes[-1] if sizes else None)


@dcmd("rd", synopsis="crash's rd: read memory as 8- to 64-bit words, symbols or ASCII",
      example="rd -64 init_task 8", usage=RD_USAGE)
def rd(ctx: Context, *args: Any) -> None:
    """``rd [-8|-16|-32|-64] [-s] [-d|-D] [-x] [-a] [-p] ADDR|SYMBOL [COUNT]``: COUNT
    entries (default 1; with -e END, up to END) in crash's layout; -s shows values that are
    kernel symbols by name, -d/-D in signed/unsigned decimal, -x leaves out the ASCII, -a
    prints the bytes as text up to a NUL, -p reads physical memory."""
    rest, size_word = _take_size(args)
    positional, opts = parse_options("rd", RD_OPTS, rest, RD_USAGE)
    if not positional:
        raise CommandError(f"rd: an address or symbol is needed (usage: rd {RD_USAGE})")
    if len(positional) > 2:
        raise CommandError(f"rd: too many arguments (usage: rd {RD_USAGE})")
    if opts.get("user"):
        raise CommandError("rd: -u (user addresses of a task) is not in pmdb yet: use ::vtop -c PID")
    memory: Any = ctx.target.memory
    if opts.get("physical"):
        memory = getattr(memory, "phys", None)
        if memory is None:
            raise CommandError("rd: -p needs a kernel dump (physical memory)")
    addr = crash_address(ctx, str(positional[0])) + (ctx.value(str(opts["offset"]), radix=10) if "offset" in opts else 0)
    size = size_word or (1 if opts.get("bits8") else ctx.target.arch.ptr_size)
    if opts.get("ascii"):
        _rd_ascii(ctx, memory, addr, _count(ctx, positional, opts, addr, 1, None))
        return
    if opts.get("symbols") and size != ctx.target.arch.ptr_size:
        raise CommandError(f"rd: -s is only allowed with {8 * ctx.target.arch.ptr_size}-bit display")
    count = _count(ctx, positional, opts, addr, size, 1)
    assert count is not None
    limit = ctx.config.get("limits.max_read_bytes")
    if count * size > limit:
        raise LimitError("limits.max_read_bytes", limit, "bytes read")
    for line in _rd_lines(ctx, memory, addr, count, size, opts):
        ctx.out.line(line)


def crash_address(ctx: Context, word: str) -> int:
    """An address argument as crash reads it: a bare hex number, else a symbol, else an
    expression."""
    if all(c in "0123456789abcdefABCDEF" for c in word) and word:
        return int(word, 16)
    sym = ctx.target.symbols.lookup(word)
    if sym is not None:
        return sym.addr
    return ctx.value(word, what="address")


def _count(ctx: Context, positional: list[Any], opts: dict[str, Any], addr: int, size: int,
           default: int | None) -> int | None:
    if len(positional) == 2:
        return ctx.value(str(positional[1]), radix=10, what="count")
    if "end" in opts:
        end = crash_address(ctx, str(opts["end"]))
        if end <= addr:
            raise CommandError(f"rd: invalid ending address: {end:x}")
        return max((end - addr) // size, 1)
    return default


def _rd_lines(ctx: Context, memory: Any, addr: int, count: int, size: int,
              opts: dict[str, Any]) -> Iterator[str]:
    per_line = PER_LINE[size]
    width = 2 * ctx.target.arch.ptr_size
    hexadecimal = not (opts.get("signed") or opts.get("unsigned"))
    ascii_tail = hexadecimal and not opts.get("symbols") and not opts.get("no_ascii")
    row: list[str] = []
    chars = ""
    start = addr
    for i in range(count):
        at = addr + i * size
        raw = memory.read(at, size)
        value = int.from_bytes(raw, "big" if ctx.target.arch.byteorder == "big" else "little")
        if i % per_line == 0:
            if row:
                yield _row(start, width, row, chars, per_line, size, ascii_tail)
            row, chars, start = [], "", at
        row.append(_entry(ctx, value, size, opts, hexadecimal))
        chars += "".join(chr(c) if 0x20 <= c < 0x7F else "." for c in raw)
    if row:
        yield _row(start, width, row, chars, per_line, size, ascii_tail)


def _entry(ctx: Context, value: int, size: int, opts: dict[str, Any], hexadecimal: bool) -> str:
    if opts.get("symbols") and value >> (8 * size - 1):     # kernel addresses only, as crash
        hit = ctx.target.symbols.resolve(value)
        if hit is not None and hit[0].kind in ("func", "object"):
            return f"{hit[0].name}+{hit[1]}".ljust(16)
    if hexadecimal:
        return f"{value:0{2 * size}x}"
    signed_width, unsigned_width = DECIMAL[size]
    if opts.get("signed"):
        if value >> (8 * size - 1):
            value -= 1 << (8 * size)
        return f"{value:{signed_width}d}"
    return f"{value:{unsigned_width}d}"


def _row(addr: int, width: int, entries: list[str], chars: str, per_line: int, size: int,
         ascii_tail: bool) -> str:
    text = f"{addr:{width}x}:  " + "".join(e + " " for e in entries)
    if not ascii_tail:
        return text        # crash ends each entry with a blank, the last one too
    pad = (per_line - len(entries)) * (2 * size + 1)
    return text + " " * pad + "  " + chars


def _rd_ascii(ctx: Context, memory: Any, addr: int, count: int | None) -> None:
    """-a: the bytes as text, 60 to a line, up to the first unprintable byte (or COUNT bytes)."""
    limit = count if count is not None else ctx.config.get("limits.max_read_bytes")
    text = bytearray()
    for i in range(limit):
        try:
            c = memory.read(addr + i, 1)[0]
        except FaultError:
            if not text:
                raise
            break
        if count is None and not 0x20 <= c < 0x7F:
            break                     # crash's rd -a ends at the first unprintable byte
        text.append(c)
    width = 2 * ctx.target.arch.ptr_size
    for off in range(0, max(len(text), 1), ASCII_PER_LINE):
        part = text[off:off + ASCII_PER_LINE].decode("latin-1")
        ctx.out.line(f"{addr + off:{width}x}:  {part}")


# -- sym -------------------------------------------------------------------------------

SYM_OPTS = {"p": "previous", "n": "next", "q:": "query", "m:": "module", "l": "every"}
SYM_USAGE = "[-p|-n] [-q string] [-m module] [-l] address|symbol ..."


@dcmd("sym", synopsis="crash's sym: an address's symbol, or a symbol's address",
      example="sym ffffffff81000000", usage=SYM_USAGE)
def sym(ctx: Context, *args: Any) -> None:
    """``sym ADDR|NAME ...``: each as ``ADDR (t) name+off [module]`` (offsets in decimal, as
    crash prints them); -p and -n add the symbol before and after, -q STRING lists the
    symbols whose names contain it, -m MODULE a module's symbols, -l every symbol."""
    positional, opts = parse_options("sym", SYM_OPTS, args, SYM_USAGE)
    symbols = ctx.target.symbols
    line_at = source_lines(ctx)
    if "query" in opts or "module" in opts or opts.get("every"):
        needle = str(opts.get("query", ""))
        module = opts.get("module")
        for s in symbols.search(f"*{needle}*" if needle else "*"):
            if module is None or s.module == module:
                ctx.out.record({"address": Hex(s.addr), "name": s.name}, text=[_show(s, 0, line_at).rstrip()])
        if not positional:
            return
    if not positional:
        raise CommandError(f"sym: an address or symbol is needed (usage: sym {SYM_USAGE})")
    for word in map(str, positional):
        for found, offset in _sym_targets(ctx, word):
            shown = [found]
            if opts.get("previous"):
                before = symbols.adjacent(found, -1)
                shown.insert(0, before) if before is not None else None
            for s in shown:
                off = offset if s is found else 0
                ctx.out.record({"address": Hex(s.addr + off), "name": s.name, "offset": off,
                                "module": s.module}, text=[_show(s, off, line_at)])
            if opts.get("next"):
                after = symbols.adjacent(found, 1)
                if after is not None:
                    ctx.out.record({"address": Hex(after.addr), "name": after.name},
                                   text=[_show(after, 0, line_at)])


def _sym_targets(ctx: Context, word: str) -> list[tuple[Symbol, int]]:
    """What one argument names: every symbol of that name, or the symbol holding an address."""
    symbols = ctx.target.symbols
    named = symbols.named(word)
    if named:
        return [(s, 0) for s in named]
    if not all(c in "0123456789abcdefABCDEFxX" for c in word):
        raise SymbolError(f"symbol not found: {word}")
    addr = ctx.value(word, what="address")
    hit = symbols.resolve(addr)
    if hit is None:
        raise SymbolError(f"symbol not found: {word}")
    return [hit]


def _show(s: Symbol, offset: int, line_at: LineAt | None) -> str:
    """crash's show_symbol: ``ADDR (L) name[+off] [module]``, then after a text symbol its
    source line, ``FILE: LINE`` (nothing without debug info, but the space crash leaves)."""
    letter = s.letter or {"func": "t", "object": "d"}.get(s.kind, "?")
    if s.binding == "global" and not s.letter:
        letter = letter.upper()
    text = f"{s.addr + offset:x} ({letter}) {s.name}" + (f"+{offset}" if offset else "")
    if s.module:
        text += f" [{s.module}]"
    if s.kind == "func":
        text += " "
        where = line_at(s.addr + offset) if line_at is not None else None
        if where is not None:
            text += f"{where[0]}: {where[1]}"
    return text
