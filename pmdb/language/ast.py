"""AST of an mdb command line. The parser builds it; nothing here reads memory.

    line      := pipeline (';' pipeline)*
    pipeline  := stage ('|' stage)* ['!' shell-text | '!' quoted ('|' stage)* | '!<' shell-text]
               | '!' quoted ('|' stage)*
    stage     := [expr] [',' expr] [verb]
    verb      := '::' name args | '$' char args | ('/'|'='|'?') fmt | '>' var
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Expr:
    """Base of expression nodes."""


@dataclass(frozen=True)
class Num(Expr):
    """A number."""

    value: int
    # a number spelled as a word (``ffffab_cde00``): a symbol of that name wins, as in mdb
    word: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Sym(Expr):
    """A symbol name, maybe qualified by its module."""

    name: str
    module: str | None = None      # ``libc.so.6`sym`` -> module "libc.so.6"
    offset: int = 0                # start offset in the source line (for errors)


@dataclass(frozen=True)
class Dot(Expr):
    """``.``: the current address."""


@dataclass(frozen=True)
class VarRef(Expr):
    """``<name``: a variable's value."""

    name: str                      # ``<name``


@dataclass(frozen=True)
class Unary(Expr):
    """A unary operator applied to an expression."""

    op: str                        # '-', '~', '#'
    operand: Expr


@dataclass(frozen=True)
class Deref(Expr):
    """``*expr`` (``*/c/expr`` ...): the value read at an address."""

    operand: Expr
    size: int | None = None        # None: pointer size; */c/ 1, */s/ 2, */i/ 4, */l/ 8


@dataclass(frozen=True)
class Binary(Expr):
    """A binary operator applied to two expressions."""

    op: str                        # + - * % %% & | ^ << >> == !=
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Arg:
    """One dcmd argument: a word or quoted string, or ``$[expr]`` (expr set)."""

    text: str
    expr: Expr | None = None
    quoted: bool = False


@dataclass(frozen=True)
class DcmdVerb:
    """A dcmd call (``::name args``, ``$c``, ``$<file``)."""

    name: str                      # "print" for ::print; "$c" for $c; "$<" for $<file
    args: tuple[Arg, ...] = ()


@dataclass(frozen=True)
class FormatVerb:
    """``/fmt``, ``=fmt`` or ``?fmt``: memory or a value formatted."""

    op: str                        # '/' (read memory), '=' (format the value itself), '?'
    fmt: str                       # e.g. "4X", "K", "s", "" (repeat the last format)


@dataclass(frozen=True)
class AssignVerb:
    """``>var``: the stage's value assigned to a variable."""

    var: str                       # ``>var``


Verb = DcmdVerb | FormatVerb | AssignVerb


@dataclass(frozen=True)
class Stage:
    """``[addr][,count][verb]``: one stage of a pipeline."""

    addr: Expr | None = None
    count: Expr | None = None
    verb: Verb | None = None       # None: a bare expression, which sets dot
    offset: int = 0                # where the stage starts in the source line


@dataclass(frozen=True)
class Pipeline:
    """Stages joined by ``|``, maybe piped through the shell."""

    stages: tuple[Stage, ...]
    shell: str | None = None       # text after '!': output is piped through sh -c
    source: bool = False           # '!<': what sh prints is run as command lines
    after: tuple[Stage, ...] = ()  # "! 'cmd' | stages": sh's output lines are their addresses


@dataclass(frozen=True)
class Line:
    """A whole command line: pipelines separated by ``;``."""

    pipelines: tuple[Pipeline, ...] = field(default_factory=tuple)
