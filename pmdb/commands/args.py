"""A dcmd's words: getopt-style options, and numbers as mdb (or crash) reads them.

``parse_options`` is the one option parser: the session runs it for every dcmd
that declares ``opts``, and ``::emulate`` runs it itself (its usage line names
the function it calls). ``number`` is the one reader of number words; every
dcmd that takes a number, a pid or a count reads it through it (or through
``Context.value``, which adds expressions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pmdb.errors import CommandError
from pmdb.language.lexer import number_value

# crash reads a bare run of digits shorter than this as a decimal pid; longer ones are
# task or memory addresses, in hex (pids stop at 4194304: 7 digits)
CRASH_PID_DIGITS = 8


class Quoted(str):
    """A word the user quoted (``'event.*'``): a dcmd may read it differently from a bare
    word (crash's foreach takes a quoted name as a regular expression)."""

    __slots__ = ()


def number(word: str, *, radix: int = 16, crash: bool = False) -> int | None:
    """The value of a number word, None when the word is not one.

    mdb's spelling: ``0x`` hex, ``0t`` decimal, ``0o`` octal, ``0i`` binary; a bare
    word is read in ``radix`` (mdb's default is 16; ``::head -n`` counts in 10).
    ``crash=True`` is crash's reading of ps and foreach arguments: a bare word shorter
    than CRASH_PID_DIGITS is a decimal pid when it is all digits and no number otherwise
    (``dd`` is a command name); longer words and prefixed ones read as mdb reads them.
    """
    text = word.strip()
    prefixed = len(text) >= 2 and text[0] == "0" and text[1].isalpha()
    if crash and not prefixed and len(text) < CRASH_PID_DIGITS:
        return int(text, 10) if text.isdigit() else None
    if radix != 16 and text and not prefixed:
        text = {10: "0t", 8: "0o", 2: "0i"}[radix] + text
    try:
        value, _, _ = number_value(text)
    except ValueError:  # only separators: "0x__"
        return None
    return value


def is_negative_number(word: Any) -> bool:
    """``-5``, ``-0t12``, ``-1+x``: a negative number or expression, never option letters
    (no dcmd has an option named by a digit)."""
    return isinstance(word, str) and word[:1] == "-" and word[1:2].isdigit()


def parse_options(name: str, opts: Mapping[str, str], args: Sequence[Any],
                  usage: str = "") -> tuple[list[Any], dict[str, Any]]:
    """getopt-style: ``-v`` flags and ``-c value`` options anywhere before ``--``.

    ``opts`` maps a letter to the keyword it sets: ``"v"`` a flag (True), ``"c:"`` an
    option with a value (the last one given wins), ``"r::"`` an option that may be
    repeated (a list of its values, in order). Words that are not options, numbers such
    as ``-5`` among them, are positional. Without ``opts`` every word is positional."""
    flags = {key.rstrip(":"): (dest, key.count(":")) for key, dest in opts.items()}
    options: dict[str, Any] = {}
    positional: list[Any] = []
    items = list(args)
    i = 0
    while i < len(items):
        word = items[i]
        i += 1
        if word == "--":
            positional += items[i:]
            break
        if (not flags or not isinstance(word, str) or not word.startswith("-") or len(word) < 2
                or is_negative_number(word)):
            positional.append(word)
            continue
        letters = word[1:]
        for j, ch in enumerate(letters):
            if ch not in flags:
                raise CommandError(f"{name}: unknown option -{ch}" + (f" (usage: {usage})" if usage else ""))
            dest, colons = flags[ch]
            if not colons:
                options[dest] = True
                continue
            value: Any = letters[j + 1:]
            if not value:
                if i >= len(items):
                    raise CommandError(f"{name}: option -{ch} needs a value")
                value, i = items[i], i + 1
            if colons > 1:
                options.setdefault(dest, []).append(value)
            else:
                options[dest] = value
            break
    return positional, options
