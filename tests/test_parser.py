"""The mdb lexer and parser: tables of input -> AST, error offsets, every prefix of real lines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmdb.errors import ParseError
from pmdb.language import lexer as lx
from pmdb.language.ast import (
    Arg,
    AssignVerb,
    Binary,
    DcmdVerb,
    Deref,
    Dot,
    FormatVerb,
    Line,
    Num,
    Pipeline,
    Stage,
    Sym,
    Unary,
    VarRef,
)
from pmdb.language.parser import parse, parse_expr

# -- expressions --------------------------------------------------------------------

EXPRS = [
    ("10", Num(0x10)),
    ("ff", Num(0xFF)),
    ("dead", Num(0xDEAD)),
    ("0x1F", Num(0x1F)),
    ("0t10", Num(10)),
    ("0o17", Num(0o17)),
    ("0i101", Num(5)),
    ("0T99", Num(99)),
    ("main", Sym("main", None, 0)),
    ("g_vals", Sym("g_vals", None, 0)),
    ("a.b$c", Sym("a.b$c", None, 0)),
    ("fg", Sym("fg", None, 0)),
    ("libc.so.6`malloc", Sym("malloc", "libc.so.6", 0)),
    ("libc`add", Sym("add", "libc", 0)),
    ("`main", Sym("main", "", 0)),
    (".", Dot()),
    ("<rsp", VarRef("rsp")),
    ("-1", Unary("-", Num(1))),
    ("~0", Unary("~", Num(0))),
    ("#0", Unary("#", Num(0))),
    ("*main", Deref(Sym("main", None, 1))),
    ("**.", Deref(Deref(Dot()))),
    ("*/c/main", Deref(Sym("main", None, 4), 1)),
    ("*/s/.", Deref(Dot(), 2)),
    ("*/i/.", Deref(Dot(), 4)),
    ("*/l/.", Deref(Dot(), 8)),
    ("*/2/.", Deref(Dot(), 2)),
    ("*/8/.", Deref(Dot(), 8)),
    ("1+2", Binary("+", Num(1), Num(2))),
    ("1-2-3", Binary("-", Binary("-", Num(1), Num(2)), Num(3))),
    ("1+2*3", Binary("+", Num(1), Binary("*", Num(2), Num(3)))),
    ("8%2", Binary("%", Num(8), Num(2))),
    ("8%%3", Binary("%%", Num(8), Num(3))),
    ("1<<4+1", Binary("<<", Num(1), Binary("+", Num(4), Num(1)))),
    ("1>>2==0", Binary("==", Binary(">>", Num(1), Num(2)), Num(0))),
    ("1!=2&3", Binary("&", Binary("!=", Num(1), Num(2)), Num(3))),
    ("1&2^3", Binary("^", Binary("&", Num(1), Num(2)), Num(3))),
    ("(1+2)*3", Binary("*", Binary("+", Num(1), Num(2)), Num(3))),
    ("-1+2", Binary("+", Unary("-", Num(1)), Num(2))),
    ("*.+8", Binary("+", Deref(Dot()), Num(8))),
    ("*(.+8)", Deref(Binary("+", Dot(), Num(8)))),
    ("<a % <b", Binary("%", VarRef("a"), VarRef("b"))),
    (" 1 +  2 ", Binary("+", Num(1), Num(2))),
]


@pytest.mark.parametrize("text,expected", EXPRS)
def test_expressions(text: str, expected: object) -> None:
    assert parse_expr(text) == expected
    # the same expression as a bare stage sets dot
    assert parse(text) == Line((Pipeline((Stage(expected, None, None, len(text) - len(text.lstrip())),)),))  # type: ignore[arg-type]


def test_top_level_bar_is_a_pipe_but_or_in_expressions() -> None:
    assert parse_expr("1^2|3") == Binary("|", Binary("^", Num(1), Num(2)), Num(3))
    assert parse("1^2|3") == Line((Pipeline((Stage(Binary("^", Num(1), Num(2))), Stage(Num(3), offset=4))),))


def one(stage: Stage, shell: str | None = None) -> Line:
    return Line((Pipeline((stage,), shell),))


# -- whole lines --------------------------------------------------------------------

LINES = [
    ("", Line(())),
    ("   ", Line(())),
    ("// a comment", Line(())),
    ("::status", one(Stage(verb=DcmdVerb("status")))),
    ("::walk thread", one(Stage(verb=DcmdVerb("walk", (Arg("thread"),))))),
    ("::walk thread | ::findstack -v",
     Line((Pipeline((Stage(verb=DcmdVerb("walk", (Arg("thread"),))),
                     Stage(verb=DcmdVerb("findstack", (Arg("-v"),)), offset=16))),))),
    ("main,10::dis", one(Stage(Sym("main", None, 0), Num(0x10), DcmdVerb("dis")))),
    ("main::dis -n 0t5 -a",
     one(Stage(Sym("main", None, 0), None, DcmdVerb("dis", (Arg("-n"), Arg("0t5"), Arg("-a")))))),
    (",5::dis", one(Stage(None, Num(5), DcmdVerb("dis")))),
    ("g_vals/4J", one(Stage(Sym("g_vals", None, 0), None, FormatVerb("/", "4J")))),
    ("<rsp,4/K", one(Stage(VarRef("rsp"), Num(4), FormatVerb("/", "K")))),
    ("g_sum=E", one(Stage(Sym("g_sum", None, 0), None, FormatVerb("=", "E")))),
    ("main?i", one(Stage(Sym("main", None, 0), None, FormatVerb("?", "i")))),
    ("./", one(Stage(Dot(), None, FormatVerb("/", "")))),
    ("/KJ", one(Stage(None, None, FormatVerb("/", "KJ")))),
    ("10=X", one(Stage(Num(0x10), None, FormatVerb("=", "X")))),
    ("1==1=D", one(Stage(Binary("==", Num(1), Num(1)), None, FormatVerb("=", "D")))),
    ("g_table>t", one(Stage(Sym("g_table", None, 0), None, AssignVerb("t")))),
    ("<t/K", one(Stage(VarRef("t"), None, FormatVerb("/", "K")))),
    ("$c", one(Stage(verb=DcmdVerb("$c")))),
    ("$C", one(Stage(verb=DcmdVerb("$C")))),
    ("$r", one(Stage(verb=DcmdVerb("$r")))),
    ("$q", one(Stage(verb=DcmdVerb("$q")))),
    ("$<script.mdb", one(Stage(verb=DcmdVerb("$<", (Arg("script.mdb"),))))),
    ("$< /tmp/x", one(Stage(verb=DcmdVerb("$<", (Arg("/tmp/x"),))))),
    ("1234::findstack", one(Stage(Num(0x1234), None, DcmdVerb("findstack")))),
    ("::nm ! grep lookup", one(Stage(verb=DcmdVerb("nm")), shell="grep lookup")),
    ("::nm!wc -l", one(Stage(verb=DcmdVerb("nm")), shell="wc -l")),
    ("::nm a!b", one(Stage(verb=DcmdVerb("nm", (Arg("a!b"),))))),
    ("!ls -l | wc", Line((Pipeline((), "ls -l | wc"),))),
    ("g_table/K | ::print struct node",
     Line((Pipeline((Stage(Sym("g_table", None, 0), None, FormatVerb("/", "K")),
                     Stage(verb=DcmdVerb("print", (Arg("struct"), Arg("node"))), offset=12))),))),
    ('::grep "a b" \'c|d\' "q\\"x"',
     one(Stage(verb=DcmdVerb("grep", (Arg("a b", quoted=True), Arg("c|d", quoted=True),
                                      Arg('q"x', quoted=True)))))),
    ("::print $[g_table+8] x",
     one(Stage(verb=DcmdVerb("print", (Arg("$[g_table+8]", Binary("+", Sym("g_table", None, 10), Num(8))),
                                       Arg("x")))))),
    ("::eval $[(1|2)]", one(Stage(verb=DcmdVerb("eval", (Arg("$[(1|2)]", Binary("|", Num(1), Num(2))),))))),
    ("::eval $[1|2]", one(Stage(verb=DcmdVerb("eval", (Arg("$[1|2]", Binary("|", Num(1), Num(2))),))))),
    ("(1|2)=X", one(Stage(Binary("|", Num(1), Num(2)), None, FormatVerb("=", "X")))),
    ("1;2", Line((Pipeline((Stage(Num(1)),)), Pipeline((Stage(Num(2), offset=2),))))),
    ("1;;2;", Line((Pipeline((Stage(Num(1)),)), Pipeline((Stage(Num(2), offset=3),))))),
    ("::dcmds ; ::walkers",
     Line((Pipeline((Stage(verb=DcmdVerb("dcmds")),)), Pipeline((Stage(verb=DcmdVerb("walkers"), offset=10),))))),
    ("::my-dcmd_2", one(Stage(verb=DcmdVerb("my-dcmd_2")))),
    ("main::dis // show it", one(Stage(Sym("main", None, 0), None, DcmdVerb("dis")))),
    ("bt", one(Stage(Sym("bt", None, 0)))),
    ("::walk thread | ::findstack ! head -3",
     Line((Pipeline((Stage(verb=DcmdVerb("walk", (Arg("thread"),))),
                     Stage(verb=DcmdVerb("findstack"), offset=16)), "head -3"),))),
    ("::help ::dis", one(Stage(verb=DcmdVerb("help", (Arg("::dis"),))))),
    ("main | ::dis", Line((Pipeline((Stage(Sym("main", None, 0)), Stage(verb=DcmdVerb("dis"), offset=7))),))),
]


@pytest.mark.parametrize("text,expected", LINES)
def test_lines(text: str, expected: Line) -> None:
    assert parse(text) == expected


# -- errors point at the bad character ----------------------------------------------

ERRORS = [
    ("1+", 2),
    ("(1", 2),
    ("(1+2))", 5),
    ("*/q/x", 2),
    ("*/3/x", 2),
    ("::", 2),
    ("::walk thread | ::", 18),
    ("$[1+", 0),
    ("::print $[1+", 12),
    ("::print $[1+2", 13),
    ("::print $[]", 10),
    ("0tz", 2),
    ("0x", 2),
    ("0i102", 4),
    ("0o8", 2),
    ("1 2", 2),
    ("main::dis |", 11),
    ("main::dis | | ::x", 11),
    ("| ::dis", 0),
    ("1 @", 2),
    ("g_vals/4J extra", 10),
    ("::grep \"open", 7),
    ("<", 1),
    ("1>", 2),
    ("$", 1),
    ("!", 1),
    ("::nm !  ", 6),
    ("1+/X", 2),
    ("`", 1),
    ("1,", 2),
    ("0i_", 2),          # a radix with only a separator: no digit first (was a ValueError)
    ("0t__=D", 2),
    ("0x_,4/X", 2),
]


@pytest.mark.parametrize("text,offset", ERRORS)
def test_error_offsets(text: str, offset: int) -> None:
    with pytest.raises(ParseError) as info:
        parse(text)
    assert info.value.offset == offset, info.value.caret()
    assert info.value.text == text
    caret = info.value.caret().splitlines()
    assert caret[1].index("^") == offset


# -- every prefix of real lines -----------------------------------------------------

REAL = [
    "::walk thread | ::findstack -v",
    "main,10::dis",
    "g_vals/4J",
    "<rsp,4/K",
    "::nm ! grep lookup",
    "g_table/K | ::print struct node",
    "g_table,0t64/K",
    "*g_table,40/J",
    "*(g_table+8)::print struct node key val next",
    "::walk list g_table | ::print -t struct node",
    "lookup::dis -n 0t10",
    "libc.so.6`malloc,4::dis -a",
    "$c; $r; ::status",
    "$<script.mdb",
    "::eval '::nm ! grep g_'",
    "::print $[*/l/g_table + 0t16] key",
    "0x10e012a0=K",
    "(g_sum&ffff)%%0t10=D",
    "crash+5?i; .=a",
    "g_found/2K | ::grep .!=0",
    "#(1==2)|(3<<4)>>1=X",
    ".>here; <here,4/X",
    "main,0t20::dis ! head -3 // first ones",
    "::help findstack",
    "!echo hello; ::dcmds",
    "::head -n 4 ::nm",
    "tunable/J; shift/J",
    "g_keys,4/E",
    "deep_rec::dis | ::head",
    "::sizeof struct node; ::offsetof struct node next",
]


@pytest.mark.parametrize("text", REAL)
def test_real_lines_parse(text: str) -> None:
    assert parse(text).pipelines


@pytest.mark.parametrize("text", REAL)
def test_every_prefix_raises_only_parse_error(text: str) -> None:
    for n in range(len(text) + 1):
        try:
            parse(text[:n])
        except ParseError as err:
            assert 0 <= err.offset <= n
        for tok in lx.tokenize(text[:n], tolerant=True):
            assert tok.kind in lx.KINDS


# -- the tolerant lexer (the highlighter's) -------------------------------------------

def test_tokens_cover_the_text() -> None:
    text = '  main,10::dis -n 5 | ::print $[1+2] "x y" ! grep a // c'
    toks = lx.tokenize(text, tolerant=True)
    assert "".join(t.text for t in toks) == text
    kinds = [t.kind for t in toks if t.kind != lx.WHITESPACE]
    assert kinds == [lx.SYMBOL, lx.COMMA, lx.NUMBER, lx.DCMD, lx.WORD, lx.WORD, lx.PIPE, lx.DCMD,
                     lx.IMMEDIATE, lx.NUMBER, lx.OPERATOR, lx.NUMBER, lx.RBRACKET, lx.STRING, lx.SHELL]


def test_tolerant_marks_errors() -> None:
    toks = lx.tokenize("1 @ 0tz", tolerant=True)
    errs = [t for t in toks if t.kind == lx.ERROR]
    assert [(t.text, t.error_at) for t in errs] == [("@", 2), ("0tz", 6)]
    with pytest.raises(ParseError):
        lx.tokenize("1 @ 0tz")


@settings(max_examples=400, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789abfxtgz_.`<>/=?*%~#()|,;:$[]!\"' -\tcsil")),
               max_size=40))
def test_tolerant_never_raises_and_parse_only_parse_errors(text: str) -> None:
    toks = lx.tokenize(text, tolerant=True)
    assert "".join(t.text for t in toks) == text
    for a, b in zip(toks, toks[1:], strict=False):
        assert a.end == b.start
    try:
        parse(text)
    except ParseError as err:
        assert 0 <= err.offset <= len(text)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=30))
def test_tolerant_on_any_unicode(text: str) -> None:
    toks = lx.tokenize(text, tolerant=True)
    assert "".join(t.text for t in toks) == text
    try:
        parse(text)
    except ParseError:
        pass


def test_colon_commands_are_one_letter_verbs():
    assert parse(":c").pipelines[0].stages[0].verb == DcmdVerb(":c", ())
    stage = parse("main:c").pipelines[0].stages[0]
    assert stage.verb == DcmdVerb(":c", ()) and stage.addr == Sym("main")
    with pytest.raises(ParseError) as err:
        parse(":")
    assert err.value.offset == 0


def test_an_unexpected_parser_error_costs_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the lexer or parser (any exception) is one 'internal error' line; the
    session runs the next line."""
    import io

    import pmdb.session
    from pmdb.session import Session

    def broken(text: str, radix: int = 16) -> Line:
        raise ValueError("x" * 5000)

    err = io.StringIO()
    session = Session(None, stdout=io.StringIO(), stderr=err)
    monkeypatch.setattr(pmdb.session, "parse", broken)
    assert session.run_line("1=X") is False
    assert err.getvalue().startswith("pmdb: internal error: ValueError: xxx") and err.getvalue().count("\n") == 1
    assert len(err.getvalue()) < 600
    monkeypatch.undo()
    assert session.run_line("1=X") is True


@pytest.mark.parametrize("text", [";", " ; ;", "// a comment", "\r;"])
def test_a_line_of_no_commands_runs_nothing(text: str) -> None:
    """A line with no pipeline (';' alone, a comment) used to raise a ValueError out of
    run_line and end pmdb with a traceback (found by the language fuzz target)."""
    import io

    from pmdb.session import Session

    err = io.StringIO()
    assert Session(None, stdout=io.StringIO(), stderr=err).run_line(text) is True
    assert err.getvalue() == ""
