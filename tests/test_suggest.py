"""suggest(): what kind of word the cursor is in, as tables of command lines."""

from __future__ import annotations

import pytest

from pmdb.repl.suggest import Suggestion, suggest

CASES = [
    # (text, kind, prefix)
    ("", "none", ""),
    ("::", "dcmd", ""),
    ("::pr", "dcmd", "pr"),
    ("main::di", "dcmd", "di"),
    ("$", "dcmd", "$"),
    ("$c", "dcmd", "$c"),
    ("::walk ", "walker", ""),
    ("::walk th", "walker", "th"),
    ("::walk thread ", "none", ""),
    ("::walk thread | ::", "dcmd", ""),
    ("::walk thread | ::find", "dcmd", "find"),
    ("::walk thread | ::print ", "type", ""),
    ("::print ", "type", ""),
    ("::print no", "type", "no"),
    ("::print struct ", "type", "struct "),
    ("::print struct no", "type", "struct no"),
    ("g_config::print struct con", "type", "struct con"),
    ("::print struct node ", "member", ""),
    ("::print struct node ne", "member", "ne"),
    ("::print -a struct node ne", "member", "ne"),
    ("::print node_t ", "member", ""),
    ("::sizeof ", "type", ""),
    ("::sizeof struct node ", "none", ""),
    ("::offsetof struct node i", "member", "i"),
    ("::print -", "option", "-"),
    ("::nm -n", "option", "-n"),
    ("::help ", "dcmd", ""),
    ("::help wa", "dcmd", "wa"),
    ("ma", "symbol", "ma"),
    ("main", "symbol", "main"),
    ("main+", "symbol", ""),
    ("main+g_", "symbol", "g_"),
    ("*(g_", "symbol", "g_"),
    ("0x40", "none", ""),
    ("main+10", "none", ""),
    ("g_config/", "none", ""),
    ("g_config/K", "none", ""),
    ("g_config=", "none", ""),
    ("g_config>", "none", ""),
    ("::dis ma", "symbol", "ma"),
    ("::dis $[g_", "symbol", "g_"),
    ("::dis $[g_config] ", "none", ""),
    ("$<", "file", ""),
    ("$< scr", "file", "scr"),
    ("$<cmds.t", "file", "cmds.t"),
    ("$<<cmds", "file", "cmds"),
    ("::walk thread ! gr", "none", ""),
    ("::grep \"ma", "none", ""),
    ("main; ::st", "dcmd", "st"),
    ("1; ma", "symbol", "ma"),
    ("(main", "symbol", "main"),
    ("main==g_", "symbol", "g_"),
]


@pytest.mark.parametrize(("text", "kind", "prefix"), CASES)
def test_suggest_at_end(text: str, kind: str, prefix: str) -> None:
    got = suggest(text, len(text))
    assert (got.kind, got.prefix) == (kind, prefix)


def test_member_carries_type_and_path() -> None:
    assert suggest("::print struct config head->na", 30) == Suggestion(
        "member", "na", context="struct config", path=("head",))
    assert suggest("::print struct config head.next.", 32) == Suggestion(
        "member", "", context="struct config", path=("head", "next"))


def test_module_qualified_symbol() -> None:
    assert suggest("libc.so.6`mall", 14) == Suggestion("symbol", "mall", context="libc.so.6")


def test_option_names_its_dcmd() -> None:
    assert suggest("::print -t", 10).context == "print"


def test_only_text_before_cursor_counts() -> None:
    text = "::walk thread | ::findstack"
    assert suggest(text, 9) == Suggestion("walker", "th")
    assert suggest(text, 2) == Suggestion("dcmd", "")


def test_every_prefix_of_real_lines_is_handled() -> None:
    lines = ["::walk thread | ::findstack -v", "g_config::print struct config head->next",
             "$[main+0t16]/4X; ::status ! head -3", "::dis $[`libc.so.6`malloc]", "$<script.txt"]
    for line in lines:
        for i in range(len(line) + 1):
            assert suggest(line, i).kind in ("dcmd", "walker", "symbol", "type", "member",
                                             "option", "file", "none")


# -- the completer: suggest()'s kinds mapped to names from a real session -------------

def _gdb_members(type_name: str) -> list[str]:
    """Member names of a type of the demo program, as gdb's ptype shows them (the oracle)."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    from pmdb.demo import user_demo_path

    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed (the oracle)")
    exe = Path(user_demo_path()).with_name("pmdb-demo")
    out = subprocess.run(["gdb", "-nx", "-batch", "-ex", f"ptype {type_name}", str(exe)],
                         capture_output=True, text=True, timeout=60).stdout
    return sorted(re.findall(r"(\w+)(?:\[\d*\])?;$", out, re.M))


@pytest.fixture(scope="module")
def completer():  # type: ignore[no-untyped-def]
    import io

    from pmdb.config import Config
    from pmdb.demo import user_demo_path
    from pmdb.opener import open_target
    from pmdb.repl.completer import SessionCompleter
    from pmdb.session import Session

    target = open_target(user_demo_path(), config=Config())
    yield SessionCompleter(Session(target, stderr=io.StringIO()))
    target.close()


def _names(completer, line: str) -> list[str]:  # type: ignore[no-untyped-def]
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    doc = Document(line, len(line))
    return [c.text for c in completer.get_completions(doc, CompleteEvent(completion_requested=True))]


def test_completes_members_as_gdb_lists_them(completer) -> None:  # type: ignore[no-untyped-def]
    assert sorted(_names(completer, "g_config::print struct config ")) == _gdb_members("struct config")
    # through a pointer member, as ::print follows it
    assert sorted(_names(completer, "::print struct config head->")) == _gdb_members("struct node")
    assert _names(completer, "::print struct config ne") == [
        m for m in _gdb_members("struct config") if m.startswith("ne")]


def test_completes_types_dcmds_walkers_symbols(completer) -> None:  # type: ignore[no-untyped-def]
    session = completer.session
    assert "struct config" in _names(completer, "::print struct con")
    assert _names(completer, "::walk ") == sorted(session.registry.walkers)
    assert set(_names(completer, "::")) == {n for n in session.registry.dcmd_names()
                                            if not n.startswith("$")}
    syms = [n for n in session.target.symbols.names() if n.startswith("g_")]
    assert _names(completer, "g_") == sorted(syms) and "g_config" in syms


def test_a_completion_replaces_only_the_typed_prefix(completer) -> None:  # type: ignore[no-untyped-def]
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    line = "::print struct con"
    (c,) = [c for c in completer.get_completions(Document(line), CompleteEvent()) if c.text == "struct config"]
    assert line[:len(line) + c.start_position] + c.text == "::print struct config"


def test_unknown_type_offers_no_members(completer) -> None:  # type: ignore[no-untyped-def]
    assert _names(completer, "::print struct nosuch ") == []


# -- highlighting ---------------------------------------------------------------------

@pytest.mark.parametrize("line", ["g_config::print struct config head | ::walk list ! grep x",
                                  "$[main+0t16]/4X; ::status", "1+", "::dis $[", "\"unterminated",
                                  "libc.so.6`malloc::dis -n 3 // comment"])
def test_highlighting_keeps_every_character(line: str) -> None:
    from pygments.token import Token

    from pmdb.repl.highlight import MdbLexer

    for i in range(len(line) + 1):
        toks = list(MdbLexer().get_tokens_unprocessed(line[:i]))
        assert "".join(text for _, _, text in toks) == line[:i]
        assert [start for start, _, _ in toks] == sorted(start for start, _, _ in toks)
    kinds = {text: kind for _, kind, text in MdbLexer().get_tokens_unprocessed(line)}
    if "::print" in kinds:
        assert kinds["::print"] in Token.Keyword


@pytest.mark.parametrize("line", ["g_config::print struct config head | ::walk list ! grep x",
                                  "$[main+0t16]/4X; ::status", "\"unterminated", "1+", ""])
def test_the_prompts_lexer_colours_as_the_pygments_lexer(line: str) -> None:
    """The prompt's own lexer gives a line (the prompt reads one) the fragments (style
    class, text) that prompt_toolkit's PygmentsLexer makes of MdbLexer, so THEME applies
    to both alike."""
    from prompt_toolkit.document import Document
    from prompt_toolkit.lexers import PygmentsLexer

    from pmdb.repl.highlight import MdbLexer, PromptLexer

    ours, theirs = PromptLexer().lex_document(Document(line)), PygmentsLexer(MdbLexer).lex_document(Document(line))
    assert ours(0) == theirs(0) and ours(1) == theirs(1) == []
    assert ("class:pygments.keyword", "::print") in ours(0) or "::print" not in line


def test_starting_the_prompt_does_not_import_pygments_lexers() -> None:
    import subprocess
    import sys

    code = "import sys, pmdb.repl.app; print(sorted(m for m in sys.modules if m.startswith('pygments.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pygments.lexer" not in out and "pygments.token" in out
