"""The pmdb command without a terminal: -e, -f, stdin, --json, exit codes.

pmdb runs as a real subprocess (its exit status and its stderr are what is
tested); gdb on the same core is the oracle for what the commands print.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pmdb.demo import demo_path, user_demo_path

DEMO_CORE = Path(user_demo_path())    # the small user core; --demo opens the kernel dump
DEMO_EXE = DEMO_CORE.with_name("pmdb-demo")
USER = str(DEMO_CORE)


def pmdb(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pmdb", *args], input=stdin, capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def gdb_thread_ids(exe: Path, core: Path) -> list[int]:
    """LWP ids of the core's threads, in gdb's thread order."""
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed (the oracle)")
    out = subprocess.run(["gdb", "-nx", "-batch", "-iex", "set debuginfod enabled off",
                          "-ex", "info threads", str(exe), str(core)],
                         capture_output=True, text=True, timeout=120).stdout
    return [int(m) for m in re.findall(r"^\*?\s+\d+\s+Thread \S+ \(LWP (\d+)\)", out, re.M)]


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pmdb: ")
    assert "Traceback" not in stderr
    return lines[0]


# -- running commands ---------------------------------------------------------------

def test_e_runs_commands_and_exits_zero() -> None:
    r = pmdb(USER, "-e", "::threads")
    assert r.returncode == 0, r.stderr
    tids = gdb_thread_ids(DEMO_EXE, DEMO_CORE)
    assert len(tids) == 4            # the demo program: main + NWORKERS (3)
    for tid in tids:
        assert re.search(rf"\b{tid}\b", r.stdout), (tid, r.stdout)


def test_e_is_repeatable_and_semicolons_separate() -> None:
    one = pmdb(USER, "-e", "::threads", "-e", "::mappings")
    two = pmdb(USER, "-e", "::threads; ::mappings")
    assert one.returncode == two.returncode == 0
    assert one.stdout == two.stdout
    assert one.stdout.startswith(pmdb(USER, "-e", "::threads").stdout)


def test_f_script_and_stdin_run_the_same_commands_as_e(tmp_path: Path) -> None:
    script = tmp_path / "cmds.txt"
    script.write_text("// a comment line\n::threads\n\n::mappings\n")
    by_e = pmdb(USER, "-e", "::threads", "-e", "::mappings")
    by_f = pmdb(USER, "-f", str(script))
    by_stdin = pmdb(USER, stdin=script.read_text())
    assert by_f.returncode == by_stdin.returncode == 0
    assert by_e.stdout == by_f.stdout == by_stdin.stdout
    assert by_stdin.stderr == ""     # no banner, no prompt without a terminal


def test_quit_stops_reading_commands() -> None:
    r = pmdb(USER, stdin="$q\n::threads\n")
    assert r.returncode == 0 and r.stdout == ""


def test_json_gives_records_matching_gdb() -> None:
    r = pmdb(USER, "--json", "-e", "::threads")
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)["records"]     # one JSON line per command
    tids = [rec["tid"] for rec in records]
    assert tids == gdb_thread_ids(DEMO_EXE, DEMO_CORE)


# -- exit status ---------------------------------------------------------------------

def test_failed_command_exits_one_with_one_line() -> None:
    r = pmdb(USER, "-e", "::nosuchdcmd")
    assert r.returncode == 1
    assert "nosuchdcmd" in one_line(r.stderr)


def test_one_failure_among_good_commands_still_exits_one() -> None:
    r = pmdb(USER, stdin="::threads\nnosuch_symbol_xyz\n::mappings\n")
    assert r.returncode == 1
    assert "nosuch_symbol_xyz" in one_line(r.stderr)
    assert r.stdout == pmdb(USER, "-e", "::threads", "-e", "::mappings").stdout


@pytest.mark.parametrize("args", [
    ("-e", "1=D", "-f", "script"),        # no dump: still -e or -f, not both
    ("--no-such-option", "x.core"),
    ("--demo", "-e", "::threads", "-f", "script"),
    ("--demo", "-f", "/nonexistent/script.txt"),
    ("/nonexistent/dir/x.core",),
])
def test_usage_errors_exit_two_with_one_line(args: tuple[str, ...]) -> None:
    r = pmdb(*args)
    assert r.returncode == 2
    one_line(r.stderr)
    assert r.stdout == ""


def test_unreadable_dumps_exit_two_with_one_line(tmp_path: Path) -> None:
    data = DEMO_CORE.read_bytes()
    cases = {"truncated.core": data[: len(data) // 3], "header.core": data[:40],
             "text.core": b"not a core file\n", "empty.core": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        r = pmdb(str(tmp_path / name), "-e", "::threads")
        assert r.returncode == 2, (name, r.stderr)
        assert name in one_line(r.stderr)


def test_bad_config_exits_two(tmp_path: Path) -> None:
    cfg = tmp_path / "pmdb.toml"
    cfg.write_text("[repl]\npager = 3\n")
    r = pmdb("--config", str(cfg), USER, "-e", "::threads")
    assert r.returncode == 2
    assert "repl.pager" in one_line(r.stderr)


def test_version() -> None:
    from pmdb import __version__

    r = pmdb("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"pmdb {__version__}"


# -- finding files ---------------------------------------------------------------------

def test_s_file_supplies_a_missing_executable(tmp_path: Path) -> None:
    """A core moved away from its executable: a warning once; -s FILE (or FILE) brings it back."""
    core = tmp_path / "moved.core"
    shutil.copy(DEMO_CORE, core)
    alone = pmdb(str(core), "-e", "::threads")
    warnings = [ln for ln in alone.stderr.splitlines() if "warning" in ln]
    assert any("pmdb-demo" in w for w in warnings)
    assert len(warnings) == len(set(warnings))
    assert "name_length" not in alone.stdout      # no symbols without the executable
    for extra in (["-s", str(DEMO_EXE)], [str(DEMO_EXE)]):
        found = pmdb(str(core), *extra, "-e", "::threads")
        assert found.returncode == 0, found.stderr
        assert "name_length" in found.stdout       # gdb: thread 1 crashed in name_length
        assert not any("pmdb-demo: not found" in ln for ln in found.stderr.splitlines())


def test_demo_banner_only_at_a_terminal() -> None:
    r = pmdb("--demo", "-e", "::threads")
    assert "Try:" not in r.stdout + r.stderr


# -- the demo dump ---------------------------------------------------------------------

def test_demo_files_are_small() -> None:
    assert DEMO_CORE.stat().st_size + DEMO_EXE.stat().st_size < 1024 * 1024


def test_demo_is_the_kernel_fixture_and_opens_without_shared() -> None:
    """The bundled kernel dump is byte-identical to the fixture (its SHA256SUMS line) and
    --demo answers crash's sys: the panic task and string of the README."""
    import hashlib

    digest = hashlib.sha256(Path(demo_path()).read_bytes()).hexdigest()
    assert digest == "986ce956a0690c21ce5f380387367852ccb24ad17ced15ecf60f481e7117f345"
    r = pmdb("--demo", "-e", "::status")
    assert r.returncode == 0, r.stderr
    assert re.search(r"PANIC: \"Kernel panic - not syncing: Fatal exception\"", r.stdout)
    assert re.search(r"^\s+TASK: ffff8be102a71840$", r.stdout, re.M)


def test_make_demo_rebuilds_a_core_gdb_reads(tmp_path: Path) -> None:
    if shutil.which("gcc") is None or shutil.which("gdb") is None:
        pytest.skip("gcc and gdb are needed to rebuild the demo")
    script = Path(__file__).parent / "data" / "demo" / "make-demo.sh"
    subprocess.run(["sh", str(script), str(tmp_path)], check=True, capture_output=True, timeout=300)
    core, exe = tmp_path / "pmdb-demo.core", tmp_path / "pmdb-demo"
    assert len(gdb_thread_ids(exe, core)) == 4
    out = subprocess.run(["gdb", "-nx", "-batch", "-ex", "bt 1", str(exe), str(core)],
                         capture_output=True, text=True, timeout=120).stdout
    assert "SIGSEGV" in out and "name_length" in out
    r = pmdb(str(core), "-e", "::threads")
    assert r.returncode == 0 and "name_length" in r.stdout, r.stderr
