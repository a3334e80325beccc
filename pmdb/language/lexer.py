"""Tokens of an mdb command line, with their spans.

The lexer is modal because mdb's words mean different things by position:
after ``::name`` the rest of a stage is dcmd arguments (``-v``, ``struct``),
at a stage's start it is an expression (``ff`` is a number). The REPL's
highlighter calls ``tokenize(text, tolerant=True)`` on every keystroke, so the
lexer never raises by itself: what it cannot read becomes an ERROR token, and
only strict mode turns the first ERROR into a ParseError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pmdb.errors import ParseError

NUMBER = "NUMBER"
SYMBOL = "SYMBOL"          # main, libc`malloc
DOT = "DOT"                # .
VAR = "VAR"                # <name
OPERATOR = "OPERATOR"      # + - * % %% << >> == != & ^ | ~ # and sized derefs */c/
LPAREN = "LPAREN"
RPAREN = "RPAREN"
COMMA = "COMMA"
DCMD = "DCMD"              # ::name (text includes the colons)
DOLLAR = "DOLLAR"          # $c, $< ..., and :c (text includes the $ or :)
FORMAT = "FORMAT"          # /fmt =fmt ?fmt (text includes the operator)
ASSIGN = "ASSIGN"          # >var
WORD = "WORD"              # a dcmd argument
STRING = "STRING"          # "..." or '...' (text includes the quotes)
IMMEDIATE = "IMMEDIATE"    # the '$[' that opens an immediate argument
RBRACKET = "RBRACKET"      # the ']' that closes it
PIPE = "PIPE"
SEMI = "SEMI"
SHELL = "SHELL"            # !cmd to the end of the line (text includes the '!')
COMMENT = "COMMENT"        # // or "# " to the end of the line (see is_hash_comment)
WHITESPACE = "WHITESPACE"
ERROR = "ERROR"

KINDS = (NUMBER, SYMBOL, DOT, VAR, OPERATOR, LPAREN, RPAREN, COMMA, DCMD, DOLLAR, FORMAT, ASSIGN,
         WORD, STRING, IMMEDIATE, RBRACKET, PIPE, SEMI, SHELL, COMMENT, WHITESPACE, ERROR)


@dataclass(frozen=True)
class Token:
    """One token of a command line and where it lies in it."""

    kind: str
    text: str
    start: int
    end: int
    message: str = ""          # ERROR tokens: what is wrong
    error_at: int = -1         # ERROR tokens: the offending character (may be inside the token)


_SPACE = re.compile(r"[ \t\r\n]+")
_MODULE_SYM = re.compile(r"([A-Za-z_][A-Za-z0-9_.+-]*)?`([A-Za-z_][A-Za-z0-9_.$]*)")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.$]*")
_NUMWORD = re.compile(r"[0-9][A-Za-z0-9_]*")
_VARNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DCMDNAME = re.compile(r"[A-Za-z0-9_-]*")
_SIZED_DEREF = re.compile(r"\*/([A-Za-z0-9])/")
_FMT_END = " \t\r\n;|!"
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")
_RADIX = {"x": 16, "t": 10, "o": 8, "i": 2}
_TWO_CHAR_OPS = ("%%", "<<", ">>", "==", "!=")

EXPR, ARGS, IMMED = "expr", "args", "immediate"


def number_value(text: str, radix: int = 16) -> tuple[int | None, int, str]:
    """(value, bad_offset, message) of an mdb number; value None when malformed.

    mdb's rules: a ``0x``/``0t``/``0o``/``0i`` prefix picks the radix (else ``radix``,
    the session's default); ``_`` separates digits anywhere after the first digit
    (``0t1__2__3``, ``44_44_``) but never starts them (``0x_1``, ``0i_``); a value
    must fit in 64 bits: cutting it silently would hand on a wrong address."""
    digits, skip = text, 0
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in _RADIX:
        radix, digits, skip = _RADIX[text[1].lower()], text[2:], 2
    if not digits:
        return None, len(text), f"missing digits after '{text}'"
    if digits[0] == "_":
        return None, skip, f"a digit must come before '_' in '{text}'"
    for i, ch in enumerate(digits):
        if ch == "_":
            continue
        if not ch.isascii() or not ch.isalnum() or int(ch, 36) >= radix:
            return None, skip + i, f"bad digit '{ch}' in base-{radix} number '{text}'"
    value = int(digits.replace("_", ""), radix)
    if value >> 64:
        return None, 0, f"number '{text}' does not fit in 64 bits"
    return value, -1, ""


def is_hex_word(text: str, radix: int = 16) -> bool:
    """mdb reads an identifier of only hex digits and separators (``ff``, ``bad___cafe``)
    as a number when the default radix is 16 (a symbol of that name still wins)."""
    return radix == 16 and bool(text) and text[0] != "_" and all(c in _HEXDIGITS or c == "_" for c in text)


def is_hash_comment(text: str, pos: int) -> bool:
    """``#`` starts a comment (as in shell and crash scripts) only where it cannot be mdb's
    unary ``#`` (logical not, written against its operand: ``#0``, ``#.``): at the start of
    a word (the line's start or after a blank) and followed by a blank, the end of the line,
    another ``#`` or ``!`` (``#!`` of a script's first line)."""
    if text[pos:pos + 1] != "#" or (pos > 0 and text[pos - 1] not in " \t"):
        return False
    return pos + 1 == len(text) or text[pos + 1] in " \t\r\n#!"


class _Lexer:
    def __init__(self, text: str, mode: str = EXPR, radix: int = 16) -> None:
        self.text = text
        self.radix = radix
        self.pos = 0
        self.tokens: list[Token] = []
        self.mode = mode
        self.depth = 0                 # parentheses open in this expression

    def add(self, kind: str, end: int, message: str = "", error_at: int = -1) -> None:
        self.tokens.append(Token(kind, self.text[self.pos:end], self.pos, end, message, error_at))
        self.pos = end

    def run(self) -> list[Token]:
        while self.pos < len(self.text):
            m = _SPACE.match(self.text, self.pos)
            if m:
                self.add(WHITESPACE, m.end())
            elif self.mode == ARGS:
                self.arg()
            else:
                self.expr()
        return self.tokens

    def rest_of_line(self, kind: str) -> None:
        self.add(kind, len(self.text))

    def end_stage(self, kind: str) -> None:
        self.add(kind, self.pos + 1)
        self.mode, self.depth = EXPR, 0

    # -- expressions and verbs --------------------------------------------------

    def expr(self) -> None:
        t, p = self.text, self.pos
        ch = t[p]
        two = t[p:p + 2]
        if two == "//" or is_hash_comment(t, p):
            self.rest_of_line(COMMENT)
        elif "0" <= ch <= "9":
            self.number()
        elif ch.isascii() and ch.isalpha() or ch in "_`":
            self.symbol()
        elif ch == ".":
            self.add(DOT, p + 1)
        elif two == "::":
            m = _DCMDNAME.match(t, p + 2)
            self.add(DCMD, m.end() if m else p + 2)
            self.mode = ARGS
        elif ch == "$":
            self.dollar()
        elif ch == ":" and t[p + 1:p + 2].isalpha():
            # mdb's colon commands (:c continue, :s step) are one-letter verbs like $c
            self.add(DOLLAR, p + 2)
            self.mode = ARGS
        elif ch in "/=?" and two != "==":
            self.format()
        elif ch in "<>" and two not in ("<<", ">>"):
            self.var_or_assign()
        elif two in _TWO_CHAR_OPS:
            self.add(OPERATOR, p + 2)
        elif ch == "*":
            m = _SIZED_DEREF.match(t, p)
            self.add(OPERATOR, m.end() if m else p + 1)
        elif ch in "+-%&^~#":
            self.add(OPERATOR, p + 1)
        else:
            self.punct(ch)

    def punct(self, ch: str) -> None:
        p = self.pos
        if ch == "(":
            self.depth += 1
            self.add(LPAREN, p + 1)
        elif ch == ")":
            self.depth = max(0, self.depth - 1)
            self.add(RPAREN, p + 1)
        elif ch == ",":
            self.add(COMMA, p + 1)
        elif ch == "|":
            if self.depth or self.mode == IMMED:
                self.add(OPERATOR, p + 1)
            else:
                self.end_stage(PIPE)
        elif ch == ";":
            self.end_stage(SEMI)
        elif ch == "!":
            self.shell()
        elif ch == "]" and self.mode == IMMED:
            self.add(RBRACKET, p + 1)
            self.mode, self.depth = ARGS, 0
        else:
            self.add(ERROR, p + 1, f"unexpected character {ch!r}", p)

    def number(self) -> None:
        m = _NUMWORD.match(self.text, self.pos)
        assert m is not None
        value, bad, message = number_value(m.group(), self.radix)
        if value is None:
            self.add(ERROR, m.end(), message, self.pos + bad)
        else:
            self.add(NUMBER, m.end())

    def symbol(self) -> None:
        t, p = self.text, self.pos
        m = _MODULE_SYM.match(t, p)
        if m:
            self.add(SYMBOL, m.end())
            return
        m = _IDENT.match(t, p)
        if not m:
            self.add(ERROR, p + 1, "expected a symbol after '`'", p + 1)
            return
        word = m.group()
        if is_hex_word(word, self.radix) and number_value(word)[0] is not None:
            self.add(NUMBER, m.end())
        else:
            self.add(SYMBOL, m.end())

    def dollar(self) -> None:
        t, p = self.text, self.pos
        nxt = t[p + 1:p + 2]
        if nxt == "[" and self.mode == IMMED:
            self.add(ERROR, p + 2, "'$[' cannot nest", p)
        elif nxt == "[":
            self.add(ERROR, p + 2, "'$[expr]' is only allowed as a dcmd argument", p)
        elif nxt and not nxt.isspace():
            self.add(DOLLAR, p + 2)
            self.mode = ARGS
        else:
            self.add(DOLLAR, p + 1)
            self.mode = ARGS

    def format(self) -> None:
        """``/fmt``, ``= fmt``: mdb allows blanks between the verb and its format
        (``0t1__2__3 = E``), so they belong to the FORMAT token."""
        t, p = self.text, self.pos
        end = p + 1
        while end < len(t) and t[end] in " \t":
            end += 1
        while end < len(t) and t[end] not in _FMT_END:
            end += 1
        self.add(FORMAT, end)
        self.mode = ARGS

    def shell(self) -> None:
        """``!cmd`` to the end of the line, or ``! 'cmd'`` / ``! "cmd"`` alone (a quoted
        command may be followed by ``| dcmd``); ``!<`` always takes the rest of the line."""
        t, p = self.text, self.pos
        q = p + 1
        while q < len(t) and t[q] in " \t":
            q += 1
        if t.startswith("!<", p) or q >= len(t) or t[q] not in "\"'":
            self.rest_of_line(SHELL)
            return
        end = quoted_end(t, q)
        if end < 0:
            self.add(ERROR, len(t), "unterminated quoted shell command", q)
            return
        self.add(SHELL, end)
        self.mode, self.depth = EXPR, 0

    def var_or_assign(self) -> None:
        t, p = self.text, self.pos
        m = _VARNAME.match(t, p + 1)
        if m:
            self.add(VAR if t[p] == "<" else ASSIGN, m.end())
            if t[p] == ">":
                self.mode = ARGS
        else:
            what = "variable" if t[p] == "<" else "assignment"
            self.add(ERROR, p + 1, f"expected a name after '{t[p]}' ({what})", p + 1)

    # -- dcmd arguments -----------------------------------------------------------

    def arg(self) -> None:
        t, p = self.text, self.pos
        ch = t[p]
        if ch in "|;":
            self.end_stage(PIPE if ch == "|" else SEMI)
        elif ch == "!":
            self.shell()
        elif t.startswith("//", p) or is_hash_comment(t, p):
            self.rest_of_line(COMMENT)
        elif t.startswith("$[", p):
            self.add(IMMEDIATE, p + 2)
            self.mode, self.depth = IMMED, 0
        elif ch in "\"'":
            self.string(ch)
        else:
            end = p
            while end < len(t) and t[end] not in " \t\r\n|;":
                end += 1
            self.add(WORD, end)

    def string(self, quote: str) -> None:
        t, p = self.text, self.pos
        i = p + 1
        while i < len(t):
            if t[i] == "\\" and quote == '"':
                i += 2
                continue
            if t[i] == quote:
                self.add(STRING, i + 1)
                return
            i += 1
        self.add(ERROR, len(t), "unterminated string", p)


def quoted_end(text: str, start: int) -> int:
    """Where the quoted text opened at ``start`` ends (just past its quote); -1 if it never
    does. A backslash escapes the next character in both kinds of quote, which is how
    mdb lets a single-quoted shell command hold ``\\'``."""
    quote, i = text[start], start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return -1


_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
              "\\": "\\", '"': '"', "'": "'"}


def shell_command(token_text: str) -> tuple[str, bool, bool]:
    """(command for sh, source, quoted) of a SHELL token.

    ``!<cmd``: run cmd and read its output as commands (source). ``! 'cmd'``: the quotes
    are mdb's, not sh's: they are removed and ``\\'`` becomes ``'``. ``! "cmd"``: C escapes
    are undone (``\\"``, ``\\n``); others, such as ``\\$``, reach sh as they are, so sh
    still sees a protected ``$``. Anything else reaches sh verbatim."""
    body = token_text[1:]
    if body.startswith("<"):
        return body[1:].strip(), True, False
    body = body.strip()
    if not body or body[0] not in "\"'" or quoted_end(body, 0) != len(body):
        return body, False, False
    inner, out, i = body[1:-1], [], 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            nxt = inner[i + 1]
            if body[0] == "'":
                out.append("'" if nxt == "'" else ch + nxt)
            else:
                out.append(_C_ESCAPES.get(nxt, ch + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out), False, True


def tokenize(text: str, tolerant: bool = False, *, expression: bool = False, radix: int = 16) -> list[Token]:
    """Every token of text, whitespace and comments included, covering it exactly.

    Tolerant mode never raises; strict mode raises ParseError at the first ERROR.
    ``expression``: text is one expression (as inside ``$[...]``), so '|' is OR.
    ``radix``: how a number without a prefix reads (the session's ``$d``).
    """
    tokens = _Lexer(text, IMMED if expression else EXPR, radix).run()
    if not tolerant:
        for tok in tokens:
            if tok.kind == ERROR:
                raise ParseError(tok.message, text, tok.error_at if tok.error_at >= 0 else tok.start)
    return tokens


def unquote(token_text: str) -> str:
    """The contents of a STRING token: quotes removed; in "..." C's escapes are undone
    (``\\n`` is a newline, as in mdb) and any other backslash keeps the next character."""
    quote, body = token_text[0], token_text[1:-1]
    if quote == "'":
        return body
    return re.sub(r"\\(.)", lambda m: _C_ESCAPES.get(m.group(1), m.group(1)), body)
