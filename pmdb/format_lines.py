"""The text layout of mdb's format verbs, and the number spellings they share with dcmds.

mdb prints each value of ``/fmt`` and ``=fmt`` as a printf field left-justified to its
format's width (``%-16x``), indented 16 columns, and wraps at 80 columns. Two details of
its output code decide where lines break, and pmdb copies them so its output matches
mdb's byte for byte: a value that would pass column 80 starts a new line, and padding
that would reach column 80 becomes the line break instead (so four 16-column values fill a
line without a trailing blank, while three 17-column ones keep theirs). Lines keep their
trailing blanks, as mdb's do.
"""

from __future__ import annotations

from collections.abc import Callable

from pmdb.errors import LimitError

LINE_WIDTH = 80
RADIX_PREFIX = {16: "0x", 10: "0t", 8: "0o", 2: "0i"}


RAW_LINE_MAX = 4096      # characters of one line of raw text before it is ended


class FormatLines:
    """Column-tracking text. With a ``sink``, finished lines are written as they are made
    (a long repeat streams, it is not built up in memory); lines held back before the
    first value count against ``limit``. The current line is kept as pieces and a length,
    so a line of many small values costs their length, not its square."""

    def __init__(self, indent: int, sink: Callable[[str], None] | None = None,
                 limit: int | None = None) -> None:
        self.indent = indent
        self.lines: list[str] = []
        self._parts: list[str] = []   # the current line
        self._width = 0               # its length
        self.fields = 0        # values written: a label alone is not worth printing
        self.ended = 0         # lines ended (the limits' measure of progress)
        self.sink = sink
        self.limit = limit

    @property
    def cur(self) -> str:
        """The current line's text."""
        return "".join(self._parts)

    @cur.setter
    def cur(self, text: str) -> None:
        self._parts = [text] if text else []
        self._width = len(text)

    def _put(self, text: str) -> None:
        self._parts.append(text)
        self._width += len(text)

    def _start(self) -> None:
        """The indent is written with a line's first text, so an empty line stays empty."""
        if not self._width:
            self._put(" " * self.indent)

    def field(self, text: str, width: int = 0) -> None:
        """One value, padded with blanks to ``width`` (mdb's ``%-Nx``)."""
        self._start()
        if self._width > self.indent and self._width + len(text) > LINE_WIDTH:
            self.newline()
            self._start()
        self._put(text)
        self.fields += 1
        pad = width - len(text)
        if pad > 0:
            if self._width + pad >= LINE_WIDTH:
                self.newline()
            else:
                self._put(" " * pad)

    def raw(self, text: str) -> None:
        """Text placed as it is: no padding and no wrapping (labels, strings, characters),
        except that a line is ended past RAW_LINE_MAX characters, so that a repeated raw
        verb (``,fffff=r``) meets the line limit instead of growing one line for ever."""
        self._start()
        self._put(text)
        self.fields += 1
        if self._width > RAW_LINE_MAX:
            self.newline()

    def tab(self, stop: int = 16) -> None:
        """To the next tab stop (none when already on one); a stop of 0 does nothing."""
        self._start()
        if stop > 0 and self._width % stop:
            self._put(" " * (stop - self._width % stop))

    def newline(self) -> None:
        # a long raw line counts as the terminal lines it fills, for the line limit
        self.ended += max(1, self._width // LINE_WIDTH)
        line = self.cur
        self.lines.append("" if not line.strip() else line)
        self.cur = ""
        if self.limit is not None and self.ended > self.limit:
            raise LimitError("limits.max_lines", self.limit, "lines of output")
        if self.sink is not None and self.fields:
            self.sink("".join(line + "\n" for line in self.lines))
            self.lines.clear()

    def text(self) -> str:
        line = self.cur
        if line.strip():
            self.lines.append(line)
        self.cur = ""
        return "".join(line + "\n" for line in self.lines)


def digits(value: int, radix: int) -> str:
    """value's digits in radix (2..36), no prefix; a negative value gets a '-'."""
    if value < 0:
        return "-" + digits(-value, radix)
    if radix == 16:
        return f"{value:x}"
    if radix == 10:
        return str(value)
    out = ""
    while True:
        value, d = divmod(value, radix)
        out = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + out
        if not value:
            return out


def radix_text(value: int, radix: int, *, show_base: bool = False) -> str:
    """A number as mdb's ``%r`` (``%#r`` with show_base) prints it in the current radix.

    With the base shown, a value below 10 is the same digit in any radix of 10 or more, so
    mdb leaves the prefix off: ``sizeof (int) = 4`` but ``sizeof (list_t) = 0x10``."""
    text = digits(value, radix)
    if show_base and not (value < 10 and radix >= 10):
        text = RADIX_PREFIX.get(radix, "") + text
    return text


def bit_diagram(value: int) -> list[str]:
    """The ``j`` format: value in binary, a caret under each set bit, then a line per set
    bit, lowest first, with a leader from its column to its number and mask. Bit numbers are
    right-aligned to the widest and masks zero-padded to the highest one's hex digits
    (``bit  0 mask 0x001`` .. ``bit 11 mask 0x800``), as the mdb-derived jfmt prints them."""
    if value == 0:
        return ["0"]
    binary = f"{value:b}"
    width = len(binary)
    bits = [b for b in range(width) if value >> b & 1]
    mask_digits = bits[-1] // 4 + 1
    num_width = len(str(bits[-1]))
    lines = [binary, "".join("^" if value >> (width - 1 - c) & 1 else " " for c in range(width)).rstrip()]
    for b in bits:
        col = width - 1 - b
        lead = "".join("|" if value >> (width - 1 - c) & 1 else " " for c in range(col))
        lines.append(f"{lead}+{'-' * (width - 1 - col)}-- bit {b:>{num_width}} mask 0x{1 << b:0{mask_digits}x}")
    return lines
