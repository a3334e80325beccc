"""Parse an mdb command line into the AST of pmdb.language.ast.

Recursive descent over the lexer's tokens. The parser never reads memory or
looks symbols up (mdb's grammar does, inside its actions; that is what makes
it impossible to test alone). Every error is a ParseError whose offset is the
character the user should look at.
"""

from __future__ import annotations

from pmdb.errors import ParseError
from pmdb.language import lexer as lx
from pmdb.language.ast import (
    Arg,
    AssignVerb,
    Binary,
    DcmdVerb,
    Deref,
    Dot,
    Expr,
    FormatVerb,
    Line,
    Num,
    Pipeline,
    Stage,
    Sym,
    Unary,
    VarRef,
    Verb,
)
from pmdb.language.lexer import Token, number_value, shell_command, tokenize, unquote

# mdb's binary operators, loosest first (a level binds tighter than the ones above it)
PRECEDENCE: tuple[tuple[str, ...], ...] = (
    ("|",),
    ("^",),
    ("&",),
    ("==", "!="),
    ("<<", ">>"),
    ("+", "-"),
    ("*", "%", "%%"),
)
UNARY = ("-", "~", "#", "*")
DEREF_SIZES = {"c": 1, "s": 2, "i": 4, "l": 8, "1": 1, "2": 2, "4": 4, "8": 8}
_STAGE_END = (lx.PIPE, lx.SEMI, lx.SHELL)


class _Parser:
    def __init__(self, text: str, expression: bool = False, radix: int = 16) -> None:
        self.text = text
        self.radix = radix
        self.toks = [t for t in tokenize(text, expression=expression, radix=radix)
                     if t.kind not in (lx.WHITESPACE, lx.COMMENT)]
        self.i = 0

    # -- token helpers -----------------------------------------------------------

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def kind(self) -> str | None:
        tok = self.peek()
        return tok.kind if tok else None

    def take(self) -> Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, message: str, offset: int | None = None) -> ParseError:
        if offset is None:
            tok = self.peek()
            offset = tok.start if tok else len(self.text)
        return ParseError(message, self.text, offset)

    def unexpected(self, wanted: str) -> ParseError:
        tok = self.peek()
        if tok is None:
            return self.error(f"expected {wanted} at the end of the line")
        return self.error(f"expected {wanted}, found '{tok.text}'")

    # -- lines and pipelines -------------------------------------------------------

    def line(self) -> Line:
        pipelines: list[Pipeline] = []
        while self.peek() is not None:
            if self.kind() == lx.SEMI:
                self.take()
                continue
            pipelines.append(self.pipeline())
            if self.peek() is not None:
                if self.kind() != lx.SEMI:
                    raise self.unexpected("';' or the end of the line")
                self.take()
        return Line(tuple(pipelines))

    def pipeline(self) -> Pipeline:
        stages: list[Stage] = []
        if self.kind() != lx.SHELL:
            stages.append(self.stage())
            while self.kind() == lx.PIPE:
                pipe = self.take()
                if self.kind() in (None, lx.SEMI, lx.PIPE, lx.SHELL):
                    raise self.error("missing a command after '|'", pipe.end)
                stages.append(self.stage())
        if self.kind() != lx.SHELL:
            return Pipeline(tuple(stages))
        tok = self.take()
        command, source, quoted = shell_command(tok.text)
        if not command:
            raise self.error("missing a shell command after '!'", tok.start + 1)
        after: list[Stage] = []
        if quoted and self.kind() == lx.SHELL:
            raise self.error("a shell command hands its output to a dcmd with '|', not '!'")
        if quoted and self.kind() == lx.PIPE:
            while self.kind() == lx.PIPE:
                pipe = self.take()
                if self.kind() in (None, lx.SEMI, lx.PIPE, lx.SHELL):
                    raise self.error("missing a command after '|'", pipe.end)
                after.append(self.stage())
            if self.kind() == lx.SHELL:
                raise self.error("only one shell command may stand in a pipeline")
        return Pipeline(tuple(stages), command, source, tuple(after))

    # -- stages ----------------------------------------------------------------------

    def stage(self) -> Stage:
        tok = self.peek()
        assert tok is not None
        start = tok.start
        addr = count = None
        if self.starts_expr():
            addr = self.expr()
        if self.kind() == lx.COMMA:
            self.take()
            count = self.expr()
        verb = self.verb()
        if verb is None and addr is None and count is None:
            raise self.unexpected("an expression or a command")
        if self.kind() not in (None, *_STAGE_END):
            wanted = "'|', ';' or the end of the line" if verb else "an operator or a command"
            raise self.unexpected(wanted)
        return Stage(addr, count, verb, start)

    def starts_expr(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        if tok.kind == lx.OPERATOR:
            return tok.text in UNARY or tok.text.startswith("*/")
        return tok.kind in (lx.NUMBER, lx.SYMBOL, lx.DOT, lx.VAR, lx.LPAREN)

    def verb(self) -> Verb | None:
        kind = self.kind()
        if kind == lx.DCMD:
            tok = self.take()
            name = tok.text[2:]
            if not name:
                raise self.error("missing a dcmd name after '::'", tok.end)
            return DcmdVerb(name, self.args())
        if kind == lx.DOLLAR:
            tok = self.take()
            if len(tok.text) < 2:
                raise self.error("missing a command letter after '$'", tok.end)
            return DcmdVerb(tok.text, self.args())
        if kind == lx.FORMAT:
            tok = self.take()
            return FormatVerb(tok.text[0], tok.text[1:].lstrip())
        if kind == lx.ASSIGN:
            return AssignVerb(self.take().text[1:])
        return None

    def args(self) -> tuple[Arg, ...]:
        args: list[Arg] = []
        while True:
            kind = self.kind()
            if kind == lx.WORD:
                args.append(Arg(self.take().text))
            elif kind == lx.STRING:
                args.append(Arg(unquote(self.take().text), quoted=True))
            elif kind == lx.IMMEDIATE:
                args.append(self.immediate())
            else:
                return tuple(args)

    def immediate(self) -> Arg:
        opener = self.take()
        if self.kind() == lx.RBRACKET:
            raise self.error("empty '$[]'", self.take().start)
        expr = self.expr()
        if self.kind() != lx.RBRACKET:
            raise self.unexpected("']' to close '$['")
        close = self.take()
        return Arg(self.text[opener.start:close.end], expr=expr)

    # -- expressions -------------------------------------------------------------------

    def expr(self, level: int = 0) -> Expr:
        if level == len(PRECEDENCE):
            return self.unary()
        ops = PRECEDENCE[level]
        left = self.expr(level + 1)
        while True:
            tok = self.peek()
            if tok is None or tok.kind != lx.OPERATOR or tok.text not in ops:
                return left
            self.take()
            left = Binary(tok.text, left, self.expr(level + 1))

    def unary(self) -> Expr:
        tok = self.peek()
        if tok is not None and tok.kind == lx.OPERATOR:
            if tok.text.startswith("*/"):
                self.take()
                letter = tok.text[2]
                if letter not in DEREF_SIZES:
                    raise self.error(f"unknown size '*/{letter}/' (use c, s, i, l or 1, 2, 4, 8)", tok.start + 2)
                return Deref(self.unary(), DEREF_SIZES[letter])
            if tok.text in UNARY:
                self.take()
                operand = self.unary()
                return Deref(operand) if tok.text == "*" else Unary(tok.text, operand)
        return self.primary()

    def primary(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise self.error("expected an expression at the end of the line")
        if tok.kind == lx.NUMBER:
            self.take()
            value, _, _ = number_value(tok.text, self.radix)
            assert value is not None  # the lexer only makes NUMBER tokens of valid numbers
            return Num(value, tok.text if tok.text[0].isalpha() else None)
        if tok.kind == lx.SYMBOL:
            self.take()
            module, _, name = tok.text.rpartition("`")
            return Sym(name, module if "`" in tok.text else None, tok.start)
        if tok.kind == lx.DOT:
            self.take()
            return Dot()
        if tok.kind == lx.VAR:
            self.take()
            return VarRef(tok.text[1:])
        if tok.kind == lx.LPAREN:
            self.take()
            inner = self.expr()
            if self.kind() != lx.RPAREN:
                raise self.unexpected("')'")
            self.take()
            return inner
        raise self.unexpected("an expression")


def parse(text: str, radix: int = 16) -> Line:
    """The AST of one command line; ParseError (with the bad offset) when malformed.
    ``radix`` reads numbers without a prefix (the session's ``$d``)."""
    return _Parser(text, radix=radix).line()


def parse_expr(text: str, radix: int = 16) -> Expr:
    """One expression alone (for ``$[...]``-like uses and tests)."""
    p = _Parser(text, expression=True, radix=radix)
    expr = p.expr()
    if p.peek() is not None:
        raise p.unexpected("an operator or the end of the expression")
    return expr
