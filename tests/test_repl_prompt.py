"""The prompt kernel engineers expect: completion of crash words' options, cache names,
foreach and members; ::help's index; ~/.pmdbrc; '#' comments; one-line errors; progress
bars and ^C. Checked on the real fixture dumps (crash's output as the oracle where it has
one), and in a pseudo-terminal as tests/test_repl_pty.py drives the real REPL."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.repl.completer import FOREACH_SELECTORS, SessionCompleter
from pmdb.session import Session
from pmdb.target import Target
from tests import kernel_truth as kt
from tests.conftest import need_fixture
from tests.linux_session import SLUB, run, target_for
from tests.linux_vmcore import KASLR, crash_section
from tests.test_repl_pty import PROMPT, PROMPT_MARK, Pty, clean

DUMP = KASLR / "dump.202611221942"
_TARGETS: dict[str, Target] = {}


def _dwarf_target() -> Target:
    """The fixture dump with its debug vmlinux (globals are typed: ``p init_task.``)."""
    if "dwarf" not in _TARGETS:
        vmlinux = kt.need_dbg_vmlinux("6.1.0-56-amd64")
        _TARGETS["dwarf"] = open_target(str(need_fixture(DUMP)), config=Config({"debuginfo.directories": []}),
                                        symbol_files=[str(vmlinux)])
    return _TARGETS["dwarf"]


def _names(target: Target, line: str) -> list[str]:
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    completer = SessionCompleter(Session(target, stdout=io.StringIO(), stderr=io.StringIO()))
    doc = Document(line, len(line))
    return [c.text for c in completer.get_completions(doc, CompleteEvent(completion_requested=True))]


def _options(target: Target, dcmd: str) -> list[str]:
    spec = Session(target, stderr=io.StringIO()).registry.dcmd(dcmd)
    return sorted(f"-{k.rstrip(':')}" for k in spec.opts)


def _members(target: Target, type_name: str, prefix: str = "") -> list[str]:
    """Member names from the dump's BTF (a second source beside the DWARF globals use),
    an anonymous struct's or union's members among them, as C reaches them."""
    def names(t: Any) -> Iterator[str]:
        for m in t.strip().members:
            if m.name:
                yield m.name
            else:
                yield from names(m.type)

    return sorted(n for n in names(target.types.lookup(type_name)) if n.startswith(prefix))


# -- completion ------------------------------------------------------------------------------

def test_crash_words_complete_their_dcmds_options() -> None:
    t = target_for(KASLR, "dump.202611221942")
    assert _names(t, "bt -") == _options(t, "bt") and "-a" in _options(t, "bt")
    assert _names(t, "kmem -") == _options(t, "kmem")
    assert _names(t, "foreach UN bt -") == _options(t, "bt")


def test_cache_names_complete_as_crash_lists_them() -> None:
    t = target_for(KASLR, "dump.202611221942")
    crash = {line.split()[-1] for line in crash_section(KASLR, "kmem -s")[1:] if line.strip()}
    for line, prefix in (("kmem -S kmalloc-", "kmalloc-"), ("::kmastat task", "task"),
                         ("::kmalog -c dentr", "dentr"), ("::kmem_verify ", "")):
        got = _names(t, line)
        assert got == sorted(n for n in crash if n.startswith(prefix)), line
    assert "kmalloc-128" in _names(t, "kmem -S kmalloc-")


def test_foreach_completes_selectors_and_commands() -> None:
    t = target_for(KASLR, "dump.202611221942")
    words = _names(t, "foreach ")
    assert {"bt", "ps", "task", "files", "vm"} <= set(words)
    assert set(FOREACH_SELECTORS) <= set(words)
    assert _names(t, "foreach U") == ["UN"] and _names(t, "foreach us") == ["user"]


def test_members_of_globals_past_arrows_and_indexes() -> None:
    t = _dwarf_target()
    assert _names(t, "p init_task.co") == _members(t, "struct task_struct", "co")
    assert "comm" in _names(t, "p init_task.co")
    assert _names(t, "p init_task.mm->") == _members(t, "struct mm_struct")
    assert _names(t, "::print init_task.tasks.") == ["next", "prev"]
    assert _names(t, "::print struct kmem_cache node[0]->nr_") == _members(t, "struct kmem_cache_node", "nr_")
    assert _names(t, "struct task_struct.pid,co") == _members(t, "struct task_struct", "co")
    assert _names(t, "p no_such_global.") == []


# -- ::help ------------------------------------------------------------------------------------

def test_help_lists_every_dcmd_and_walker_once_with_crash_words() -> None:
    from pmdb.language.crash_aliases import CRASH_ALIASES

    t = target_for(KASLR, "dump.202611221942")
    out, err = run(t, "::help")
    assert not err
    registry = Session(t, stderr=io.StringIO()).registry
    rows = [line for line in out.splitlines() if line.startswith(("::", "$", ":"))]
    listed = [re.match(r"(::|)(\S+)", r).group(2) for r in rows]      # type: ignore[union-attr]
    assert sorted(listed) == sorted(registry.dcmds)
    walker_rows = out.split("Walkers (addr::walk NAME)\n", 1)[1].splitlines()
    assert sorted(w.split()[0] for w in walker_rows if w.strip()) == sorted(registry.walkers)
    by_name = {name: row for name, row in zip(listed, rows, strict=True)}
    for word, target in CRASH_ALIASES.items():
        assert re.search(rf"(^|[\s,]){re.escape(word)}(,|\s)", by_name[target.split()[0]]), (word, target)
    titles = [line for line in out.splitlines() if line and not line.startswith((" ", ":", "$"))]
    assert "Stacks" in titles and "Kernel memory and slabs" in titles and "Plugins" not in titles


# -- '#' comments, command files, ~/.pmdbrc -----------------------------------------------------

# a test's own HOME (its ~/.pmdbrc) keeps the shared cache, so a kernel's DWARF index is
# not built again in every fresh HOME
CACHE_HOME = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")


def _pmdb(args: list[str], *, home: Path, env: dict[str, str] | None = None,
          stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PMDB_NORC", "PMDB_CONFIG")}
    environ.update(HOME=str(home), XDG_CACHE_HOME=CACHE_HOME, **(env or {}))
    return subprocess.run([sys.executable, "-m", "pmdb", *args], capture_output=True, text=True,
                          timeout=120, env=environ, input=stdin)


def test_hash_comments_in_scripts_and_on_lines(tmp_path: Path) -> None:
    script = tmp_path / "cmds"
    script.write_text("#!/usr/bin/env pmdb -f\n# a comment line\n  # an indented one\n"
                      "0t41+1=D   # a trailing comment\n#0=D\n::echo a#b # not the a#b\n// old style\n")
    r = _pmdb(["--norc", "-f", str(script)], home=tmp_path)
    assert r.returncode == 0, r.stderr
    # in a file every line starting with '#' is a comment; 'a#b' is one word
    assert r.stdout.split() == ["42", "a#b"], r.stdout
    # on a command line, '#' against its operand is still mdb's logical not
    r = _pmdb(["--norc", "-e", "#0=D", "-e", "1+#1=D # one plus not one"], home=tmp_path)
    assert r.stdout.split() == ["1", "1"] and r.returncode == 0, (r.stdout, r.stderr)


def test_a_command_file_that_includes_itself_is_one_line(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mdb", tmp_path / "b.mdb"
    a.write_text(f"::echo in-a\n$<{b}\n")
    b.write_text(f"# b\n$<{a}\n")
    selfish = tmp_path / "self.mdb"
    selfish.write_text(f"$<{selfish}\n")
    r = _pmdb(["--norc", "-e", f"$<{selfish}"], home=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"pmdb: {selfish}: the command file includes itself ({selfish} -> {selfish})"]
    r = _pmdb(["--norc", "-e", f"$<{a}"], home=tmp_path)
    assert r.stdout.split() == ["in-a"]
    assert r.stderr.splitlines() == [f"pmdb: {a}: the command file includes itself ({a} -> {b} -> {a})"]


def test_pmdbrc_runs_first_unless_skipped(tmp_path: Path) -> None:
    (tmp_path / ".pmdbrc").write_text("# my settings\n$d\n::echo from-rc\n::nosuchdcmd\n")
    r = _pmdb(["-e", "0t7=D"], home=tmp_path)
    assert r.stdout.split() == ["radix", "=", "16", "base", "ten", "from-rc", "7"], r.stdout
    assert r.stderr.splitlines() == ["pmdb: unknown dcmd 'nosuchdcmd' (::dcmds lists them)"]
    assert r.returncode == 0          # the rc file's failure is not the -e command's
    for args, env in ((["--norc"], {}), ([], {"PMDB_NORC": "1"})):
        r = _pmdb([*args, "-e", "0t7=D"], home=tmp_path, env=env)
        assert r.stdout.split() == ["7"] and not r.stderr, (args, env, r.stdout, r.stderr)


def test_an_unreadable_print_base_is_one_error() -> None:
    t = target_for(KASLR, "dump.202611221942")
    out, err = run(t, "0xdeadbeef::print task_struct")
    assert out == "" and err.splitlines() == [
        "pmdb: cannot read 9792 bytes at 0xdeadbeef: no PGD entry for 0xdeadbeef"]
    out, err = run(t, "0xdeadbeef::print task_struct pid comm")
    assert out == "" and len(err.splitlines()) == 1


# -- in a pseudo-terminal --------------------------------------------------------------------------

def _config(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "pmdb.toml"
    cfg.write_text(f'[repl]\nhistory_file = "{tmp_path / "history"}"\nprompt = "{PROMPT}"\npager = false\n'
                   f"{extra}")
    return cfg


@pytest.fixture
def kernel_repl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pty]:
    vmlinux = kt.need_dbg_vmlinux("6.1.0-56-amd64")   # named on the command line: globals are typed
    home = tmp_path / "home"
    home.mkdir()
    (home / ".pmdbrc").write_text("# set up as a user would\n::echo rc-ran\n")
    monkeypatch.setenv("HOME", str(home))       # the child's environment: its own ~/.pmdbrc
    monkeypatch.setenv("XDG_CACHE_HOME", CACHE_HOME)
    monkeypatch.delenv("PMDB_NORC", raising=False)
    p = Pty(["-q", "--config", str(_config(tmp_path, "[output]\nprogress_after_ms = 0\n")),
             str(need_fixture(SLUB / "dump.202611222031")), str(vmlinux)], rc=True)
    p.expect(b"rc-ran")
    p.prompt()
    yield p
    if p.status is None:
        os.kill(p.pid, signal.SIGKILL)
        p.finish()


def _plain(line: str) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "pmdb", "--norc", str(SLUB / "dump.202611222031"), "-e", line],
                       capture_output=True, text=True, timeout=120)
    return [ln for ln in r.stdout.split("\n") if ln.strip()]


def test_tab_completes_a_member_of_a_global_and_a_cache_name(kernel_repl: Pty) -> None:
    # completion runs asynchronously (its first use loads the types: seconds on a busy
    # machine): wait until the completed text is drawn, then Enter
    kernel_repl.send("p init_task.tgi\t")      # tgid: the one member starting so
    kernel_repl.expect(b"d", timeout=60)        # the typed text has no "d": the completion does
    assert kernel_repl.command("", keys="\r") == _plain("p init_task.tgid")
    kernel_repl.send("kmem -S task_stru\t")
    kernel_repl.expect(b"ct", timeout=60)
    assert kernel_repl.command("", keys="\r") == _plain("kmem -S task_struct")


def test_a_long_pipe_shows_a_bar_and_ctrl_c_stops_it(kernel_repl: Pty) -> None:
    kernel_repl.send("::walk kmem_cache | ::walk kmem | ::grep .==0\r")
    bar = clean(kernel_repl.expect(b"^C stops it", timeout=120))
    assert re.search(r"::walk .*\d+/\d+", bar), bar
    kernel_repl.send("\x03")
    out = clean(kernel_repl.expect(PROMPT_MARK, timeout=60))
    assert "pmdb: interrupted" in out, out
    assert [ln.strip() for ln in kernel_repl.command("::echo still-here")] == ["still-here"]


def test_no_bar_without_a_terminal(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "[output]\nprogress_after_ms = 0\n")
    r = _pmdb(["--norc", "--config", str(cfg), str(need_fixture(DUMP)), "-e", "::walk task | ::print task_struct pid"],
              home=tmp_path)
    assert r.returncode == 0 and r.stderr == "" and "stops it" not in r.stdout


# -- suggest(): the pure half, as a table -------------------------------------------------------

SUGGEST_CASES = [
    # (text, kind, prefix, context, path, variable)
    ("bt -", "option", "-", "bt", (), ""),
    ("ps -", "option", "-", "ps", (), ""),
    ("kmem -S ", "cache", "", "", (), ""),
    ("kmem -S kmal", "cache", "kmal", "", (), ""),
    ("::kmastat km", "cache", "km", "", (), ""),
    ("::kmalog -c ", "cache", "", "", (), ""),
    ("foreach ", "foreach", "", "", (), ""),
    ("foreach UN ", "foreach", "", "", (), ""),
    ("foreach UN bt -", "option", "-", "bt", (), ""),
    ("p init_task.co", "member", "co", "", (), "init_task"),
    ("p init_task->mm->pg", "member", "pg", "", ("mm",), "init_task"),
    ("p *init_task.tasks.", "member", "", "", ("tasks",), "init_task"),
    ("::print init_task.comm", "member", "comm", "", (), "init_task"),
    ("::print struct config head[2].na", "member", "na", "struct config", ("head",), ""),
    ("struct task_struct.pid,co", "member", "co", "struct task_struct", (), ""),
    ("p jiffies", "symbol", "jiffies", "", (), ""),
    ("g_config>x", "none", "", "", (), ""),
]


@pytest.mark.parametrize(("text", "kind", "prefix", "context", "path", "variable"), SUGGEST_CASES)
def test_suggest_table(text: str, kind: str, prefix: str, context: str, path: tuple[str, ...],
                       variable: str) -> None:
    from pmdb.repl.suggest import Suggestion, suggest

    assert suggest(text) == Suggestion(kind, prefix, context=context, path=path, variable=variable)


def test_theme_uses_the_terminals_own_colours() -> None:
    """Every token's colour is an ANSI name (the terminal's palette) or the default
    foreground: no fixed RGB such as pygments' navy for symbols."""
    from pygments.token import Token

    from pmdb.repl.highlight import STYLE_OF, prompt_style

    style = prompt_style()
    for token in {*STYLE_OF.values(), Token.Name.Variable}:
        name = "pygments." + ".".join(token).lower() if token is not Token else "pygments"
        attrs = style.get_attrs_for_style_str(f"class:{name}")
        assert attrs.color in (None, "", "default") or attrs.color.startswith("ansi"), (token, attrs)
        assert attrs.bgcolor in (None, "", "default"), (token, attrs)
    symbol = style.get_attrs_for_style_str("class:pygments.name.variable")
    assert symbol.color in (None, "", "default")          # bare words: the terminal's foreground


def test_the_prompt_draws_in_the_terminals_own_colours(kernel_repl: Pty) -> None:
    """What the prompt draws while a line is typed uses only the basic ANSI colour codes
    (30-37, 90-97) and attributes: no 256-colour or RGB codes (pygments' navy symbols)."""
    start = len(kernel_repl.data)
    kernel_repl.send("init_task::print task_struct pid | ::walk thread ! grep x // note")
    deadline = time.monotonic() + 10
    while b"note" not in kernel_repl.data[start:] and time.monotonic() < deadline:
        kernel_repl.read(0.2)
    drawn = kernel_repl.data[start:]
    assert b"note" in drawn
    codes = re.findall(rb"\x1b\[([0-9;]*)m", drawn)
    assert codes, drawn                                  # the line is coloured at all
    assert not [c for c in codes if b"38;5" in c or b"38;2" in c or b"48;" in c], codes
    kernel_repl.send("\x03")                             # abandon the line
    kernel_repl.expect(PROMPT_MARK)
