"""The dcmds about the mdb language itself: the format verbs and evaluating a string as a line."""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError
from pmdb.format_lines import radix_text
from pmdb.formats import DESCRIPTIONS
from pmdb.output import Column

NAME_COLUMNS = (Column("format", "FORMAT"), Column("description", "DESCRIPTION", gap=" - "))


@dcmd("formats", addr="none", synopsis="list the format characters of / = and ?", example="::formats")
def formats_list(ctx: Context) -> None:
    """Each format character with what it prints and how many bytes it reads.

    Use them after a verb: ``addr/4X`` reads four 4-byte words at addr,
    ``value=D`` prints a value in decimal, ``addr/KJ`` mixes verbs; a count
    before a character repeats it. K and p read the target's pointer size."""
    rows = []
    for ch in sorted(DESCRIPTIONS, key=lambda c: (c.lower(), c.islower(), c)):
        rows.append([ch, DESCRIPTIONS[ch]])
    ctx.out.table(NAME_COLUMNS, rows, header=False)


@dcmd("eval", synopsis="evaluate a string as a command line", example="::eval '<rsp/K'",
      usage="command-line")
def eval_cmd(ctx: Context, *words: object) -> None:
    """Run the argument (joined by spaces) as an mdb command line.

    As in mdb, this lets a pipeline or a macro build a command from parts, e.g.
    ``::eval "$[g_table]::print struct node"``. With an address, dot is set to
    it first, so ``.`` in the line names it."""
    if not words:
        raise CommandError("eval: give a command line to run (usage: ::eval command-line)")
    line = " ".join(f"{w:#x}" if isinstance(w, int) else str(w) for w in words)
    if ctx.addr is not None:
        ctx.set_dot(ctx.addr)
    ctx.run_line(line)   # reports its own errors; a bare newline repeats ::eval, not it


@dcmd("$d", synopsis="print or set the default radix", example="0t10$d", usage="")
def radix_cmd(ctx: Context) -> None:
    """Prints the default radix; ``addr$d`` sets it first (2 to 16), as mdb does.

    The radix reads numbers written without a prefix (``0t10$d`` then ``555 = E`` is
    decimal 555) and is how ``::map`` and ``::echo`` print numbers; ``0x``, ``0t``,
    ``0o`` and ``0i`` still name their own radix."""
    if ctx.addr is not None:
        if not 2 <= ctx.addr <= 16:
            raise CommandError(f"illegal radix {ctx.addr} (2 to 16, in decimal)")
        ctx.set_radix(ctx.addr)
    ctx.out.line(f"radix = {ctx.radix} base ten")


@dcmd("echo", synopsis="print the arguments", example="::echo hello $[1+2]", usage="[word ...]")
def echo_cmd(ctx: Context, *words: Any) -> None:
    """Each argument followed by a blank, then a newline, as mdb's ``::echo`` prints them;
    a ``$[expr]`` argument is printed in the default radix."""
    ctx.out.write("".join(f"{_word(ctx, w)} " for w in words) + "\n")


@dcmd("map", synopsis="print (or hand on) an expression's value at each address",
      example="::walk task | ::map .+8", usage="expression")
def map_cmd(ctx: Context, *words: Any) -> None:
    """Evaluates the expression with dot set to the address (or dot when none is given)
    and prints its value in the default radix; piped, the value goes on as an address."""
    if not words:
        raise CommandError("map: an expression is needed (usage: [addr]::map expression)")
    if ctx.addr is not None:
        ctx.set_dot(ctx.addr)
    text = " ".join(_word(ctx, w) for w in words)
    value = ctx.value(text, radix=ctx.radix)
    if ctx.piped:
        ctx.emit(value)
    else:
        ctx.out.write(radix_text(value, ctx.radix) + "\n")


def _word(ctx: Context, word: Any) -> str:
    return radix_text(word, ctx.radix) if isinstance(word, int) else str(word)
