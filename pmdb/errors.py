"""The few exceptions a user sees.

Every layer translates foreign errors (pyelftools, zlib, unicorn, KeyError...)
into one of these where they enter pmdb; the session prints ``str(err)`` as one
line and carries on.
"""

from __future__ import annotations

QUOTE_LIMIT = 60           # characters of an input quoted inside an error message
MESSAGE_LIMIT = 400        # characters of a whole message: a damaged dump cannot flood the screen


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was (inputs from a dump or a
    user can be any length; an error stays one readable line)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def quote(text: str | bytes, limit: int = QUOTE_LIMIT) -> str:
    """An input as an error quotes it: repr'd (control characters escaped), at most ``limit``
    characters of it."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class PmdbError(Exception):
    """Base of every error pmdb reports to the user as one line (at most MESSAGE_LIMIT
    characters of it: one that quoted a huge input is cut, saying so)."""

    def __str__(self) -> str:
        return clip(super().__str__())


class FaultError(PmdbError):
    """An address that cannot be read (unmapped, excluded from the dump, ...)."""

    def __init__(self, address: int, size: int = 1, reason: str = "") -> None:
        self.address = address
        self.size = size
        self.reason = reason
        text = f"cannot read {size} byte{'s' if size != 1 else ''} at {address:#x}"
        super().__init__(f"{text}: {reason}" if reason else text)


class FormatError(PmdbError):
    """A file that is not what it claims to be: unknown, truncated or corrupt."""


class CommandError(PmdbError):
    """A command used wrongly: unknown dcmd, bad option, missing address."""


class SymbolError(PmdbError):
    """An unknown symbol or type name."""


class CorruptionError(PmdbError):
    """A data structure in the dump that cannot be right (a cycle, a wild pointer)."""

    def __init__(self, address: int, why: str) -> None:
        self.address = address
        self.why = why
        super().__init__(f"corrupt data at {address:#x}: {why}")


class LimitError(PmdbError):
    """A command stopped by one of pmdb.toml's ``[limits]``: it says which, and how to raise it."""

    def __init__(self, option: str, value: int, what: str) -> None:
        self.option = option
        super().__init__(f"stopped after {value} {what}: the limit {option} (raise it in pmdb.toml)")


class ParseError(PmdbError):
    """A command line that does not parse; ``offset`` points at the bad character."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        self.message = message
        self.text = text
        self.offset = offset
        super().__init__(message)

    def caret(self, indent: int = 0) -> str:
        """The line and a caret under the offending character, for display; ``indent`` is
        the width of whatever precedes the line on screen (e.g. a ``pmdb: `` prefix)."""
        return f"{self.text}\n{' ' * (indent + self.offset)}^ {self.message}"
