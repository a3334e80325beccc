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
