"""The dcmds about the mdb language itself: the format verbs and evaluating a string as a line."""

from __future__ import annotations

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError
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
