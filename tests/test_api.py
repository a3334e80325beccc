"""The Python API (pmdb.open -> Program) on the real fixture dumps, against crash's and
drgn's outputs for them, gdb's view of user cores, and the programs' own output."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pmdb
from tests import kernel_truth as kt
from tests.conftest import USER_CORES, need_fixture
from tests.cores import compile_threads, gcore_core, gdb_threads, need_tools
from tests.linux_session import crash_ps, run
from tests.linux_vmcore import KASLR, crash_section

RELEASE = "6.1.0-56-amd64"
DUMP = KASLR / "dump.202611221942"
CRASHED_TASK = 0xFFFF8BE102A71840          # pid 102, crashapp (crash's bt, drgn's crashed thread)
_OPEN: dict[str, pmdb.Program] = {}


def _kernel(with_dwarf: bool = True) -> pmdb.Program:
    """The KASLR fixture dump, with its debug vmlinux (globals typed, source lines) or BTF alone."""
    key = "dwarf" if with_dwarf else "btf"
    if key not in _OPEN:
        files = [str(kt.need_dbg_vmlinux(RELEASE))] if with_dwarf else []
        _OPEN[key] = pmdb.open(str(need_fixture(DUMP)), *files, config={"debuginfo.directories": []})
    return _OPEN[key]


def _drgn_frames() -> list[tuple[str, str, int]]:
    """(function, file, line) of each frame drgn printed for the crashed thread."""
    text = need_fixture(KASLR / "drgn-oracle.txt").read_text()
    return [(m.group(1), m.group(2), int(m.group(3)))
            for m in re.finditer(r"^#\d+\s+(\S+?)(?:\+\S+)? \((\S+?):(\d+)(?::\d+)?\)$", text, re.M)]


# -- kernel dumps --------------------------------------------------------------------------

def test_tasks_are_crash_ps_tasks_in_its_order() -> None:
    prog = _kernel(with_dwarf=False)
    ours = [(int(t.pid), t.address, t.comm.string_().decode()) for t in prog.tasks()]
    theirs = [(r.pid, r.task, r.comm.strip("[]")) for r in crash_ps(KASLR)]
    assert ours == theirs


def test_init_task_is_a_typed_global_with_the_debug_vmlinux() -> None:
    prog = _kernel()
    init = prog["init_task"]
    assert init.address == prog.symbol("init_task").addr
    assert str(init.type_) == "struct task_struct"
    assert init.comm.string_() == b"swapper/0"
    assert int(init.pid) == 0 and init.pid == 0
    assert repr(init.comm) == '[ "swapper/0" ]'
    # through pointers as ->, and [i] on arrays
    assert init.tasks.next.deref().address == int(init.tasks.next)
    assert init.comm[0] == ord("s") and len(init.comm) == 16


def test_globals_need_debug_info_and_say_so() -> None:
    """Without a debug vmlinux only the usual globals are typed (their headers' types)."""
    assert int(_kernel(with_dwarf=False)["init_task"].pid) == 0
    with pytest.raises(KeyError, match="no type is known for 'loops_per_jiffy'"):
        _kernel(with_dwarf=False)["loops_per_jiffy"]
    with pytest.raises(KeyError, match="unknown symbol"):
        _kernel(with_dwarf=False)["no_such_symbol_anywhere"]


def test_object_repr_is_print_output() -> None:
    prog = _kernel(with_dwarf=False)
    task = prog.object(CRASHED_TASK, "struct task_struct")
    printed, err = run(prog.target, f"{CRASHED_TASK:#x}::print task_struct")
    assert not err
    assert repr(task) + "\n" == printed
    assert task.pid == 102 and task.comm.string_() == b"crashapp"
    assert task.value_()["pid"] == 102 and task.value_()["comm"].rstrip(b"\0") == b"crashapp"


def test_an_unreadable_object_is_one_line() -> None:
    text = repr(_kernel(with_dwarf=False).object(0xDEADBEEF, "struct task_struct"))
    assert text.startswith("<unreadable 0xdeadbeef") and "\n" not in text


def test_task_by_pid_and_its_stack_against_crash_bt_and_drgn() -> None:
    prog = _kernel()
    task = prog.task(102)
    assert task.address == CRASHED_TASK
    stack = prog.stack(task)
    assert stack.thread.address == CRASHED_TASK
    # crash's bt frames, in order, are among ours (pmdb also shows the frames crash skips)
    crash_functions = [m.group(1) for line in crash_section(KASLR, "bt")
                       if (m := re.match(r"\s*#\d+ \[[0-9a-f]+\] (\S+) at ", line))]
    assert len(crash_functions) == 8
    ours = iter(stack.functions)
    assert all(name in ours for name in crash_functions), (crash_functions, stack.functions)
    # every source line pmdb gives is one drgn gives for this thread (drgn adds inlined frames)
    # (pmdb names files as crash's bt -l does, from the build tree; drgn relative to it)
    drgn = {(file, line) for _, file, line in _drgn_frames()}
    sources = [f.source for f in stack if f.source is not None]
    assert len(sources) >= 7 and all(any(line == dl and (file == df or file.endswith("/" + df))
                                         for df, dl in drgn) for file, line in sources), (sources, drgn)
    assert stack[0].pc == stack[0].frame.pc and stack[0].sp > 0
    assert prog.stack().thread.address == CRASHED_TASK        # the panic task by default
    # each frame is named as $c names it: after panic (noreturn) the caller is oops_end.cold,
    # not show_opcodes.cold, which starts at the return address
    dollar_c = [re.sub(r"\(\)( \[\w+\])?$", "", row["function"]) for row in prog.run("0t102$c")]
    ours = [f.symbol.split("`")[-1] for f in stack][:len(dollar_c)]     # module`name: [module] in $c
    assert ours == dollar_c and "oops_end.cold+0x18" in dollar_c
    # a frame's repr is one short line in hex, not the dataclass's page of decimal registers
    first = repr(stack[0])
    assert first.startswith(f"<StackFrame #0 {stack[0].symbol} pc={stack[0].pc:#x}") and "\n" not in first


def test_stack_of_a_pid_an_address_or_a_pointer_is_the_same() -> None:
    prog = _kernel(with_dwarf=False)
    by_pid = [f.pc for f in prog.stack(102)]
    assert by_pid == [f.pc for f in prog.stack(CRASHED_TASK)]
    pointer = prog.object(prog.task(102).address, "struct task_struct").tasks.next.cast("struct task_struct *")
    assert int(pointer) != 0
    assert [f.pc for f in prog.stack(prog.task(102))] == by_pid


def test_msgbuf_is_crash_log_without_timestamps() -> None:
    crash = [re.sub(r"^\[\s*\d+\.\d+\] ", "", line) for line in crash_section(KASLR, "log")]
    ours = _kernel(with_dwarf=False).msgbuf()
    assert ours[-5:] == crash[-5:]
    assert len(ours) == len([line for line in crash if line])


def test_run_returns_the_rows_ps_yields() -> None:
    rows = _kernel(with_dwarf=False).run("::ps")
    theirs = crash_ps(KASLR)
    assert [(r["pid"], int(r["task"]), r["comm"]) for r in rows] == [(t.pid, t.task, t.comm) for t in theirs]
    assert repr(rows[0]["task"]) == "0xffffffff8ba1aa40"      # an Address prints in hex
    assert rows[-1].state == "RU" and rows[-1].active


def test_run_gives_text_lines_and_errors() -> None:
    prog = _kernel(with_dwarf=False)
    text = prog.run("::walk task | ::print task_struct pid comm")
    assert [r["value"] for r in text if r["name"] == "pid"][:3] == [0, 0, 1]
    with pytest.raises(pmdb.PmdbError, match="unknown dcmd 'nosuchdcmd'"):
        prog.run("::nosuchdcmd")
    failed = prog.run("::nosuchdcmd", check=False)
    assert failed.failed and failed.errors == ["unknown dcmd 'nosuchdcmd' (::dcmds lists them)"]


def test_type_by_spelling() -> None:
    prog = _kernel(with_dwarf=False)
    slab = prog.type("struct slab")
    assert slab.kind == "struct" and slab.find_member("slab_cache") is not None
    out, _ = run(prog.target, "::sizeof struct slab")
    assert out.strip() == f"sizeof (struct slab) = {slab.size:#x}"
    with pytest.raises(pmdb.PmdbError, match="unknown type"):
        prog.type("struct no_such_type")


def test_rich_and_html_forms() -> None:
    from rich.console import Console

    prog = _kernel(with_dwarf=False)
    rows = prog.run("::ps")
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(rows)
    shown = console.file.getvalue()   # type: ignore[attr-defined]
    assert "crashapp" in shown and "ffff8be102a71840" in shown
    assert "<table>" in rows._repr_html_() and "crashapp" in rows._repr_html_()
    task = prog.task(102)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(task.comm)
    assert '[ "crashapp" ]' in console.file.getvalue()   # type: ignore[attr-defined]
    assert "<b>pid</b> = 0t102" in task._repr_html_() or "<b>pid</b> = 0x66" in task._repr_html_()
    assert "page_fault_oops" in prog.stack(102)._repr_html_()


# -- user cores ----------------------------------------------------------------------------

def test_user_core_globals_and_stack_against_the_program_and_gdb() -> None:
    core = need_fixture(USER_CORES / "hashcrash-x86_64-O2.core")
    exe = USER_CORES / "hashcrash-x86_64-O2"
    out = (USER_CORES / "hashcrash-x86_64-O2.out").read_text()
    with pmdb.open(str(core), str(exe)) as prog:
        assert prog.kind == "user"
        # the program printed chain_sum(...) = N and stored it in g_sum
        assert int(prog["g_sum"]) == int(re.search(r"chain_sum\(.*\) = (\d+)", out).group(1))  # type: ignore[union-attr]
        (thread,) = prog.threads()
        stack = prog.stack(thread)
        assert stack.functions[:2] == ["crash", "main"]
        gdb = subprocess.run(["gdb", "-q", "-nx", "-batch", "-ex", "bt", str(exe), "-c", str(core)],
                             capture_output=True, text=True, timeout=120).stdout if _have("gdb") else ""
        for frame in stack[:2]:
            assert frame.source is not None and frame.source[0].endswith("hashcrash.c")
            if gdb:
                assert f"in {frame.function} " in gdb and f"hashcrash.c:{frame.source[1]}" in gdb


def test_user_core_threads_are_gdbs(tmp_path: Path) -> None:
    need_tools("gcc", "gdb")
    exe = compile_threads(tmp_path / "threads", opt="-O0")
    core = gcore_core(exe, tmp_path / "core")
    gdb = gdb_threads(exe, core)
    with pmdb.open(str(core), str(exe)) as prog:
        threads = prog.threads()
        assert sorted(t.id for t in threads) == sorted(g.lwp for g in gdb)
        for t in threads:
            mine = prog.stack(t)
            theirs = next(g for g in gdb if g.lwp == t.id).real_frames()
            n = min(len(mine), len(theirs))
            assert n >= 2 and [f.pc for f in mine[:n]] == [f.pc for f in theirs[:n]], (t.id, mine, theirs)
            # names agree in the program (gdb may have libc's debug symbols, which pmdb does not read)
            in_exe = [(f.function, g.name) for f, g in zip(mine, theirs, strict=False) if f.module is None and f.function]
            assert in_exe and all(a == b for a, b in in_exe), in_exe


def _have(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


# -- the package itself ----------------------------------------------------------------------

def test_import_pmdb_loads_no_api_until_asked() -> None:
    """Only the dataclass code cache (pmdb.codecache, with its seal check and where the cache
    directory is) comes first."""
    code = ("import sys, pmdb; before = {m for m in sys.modules if m.startswith('pmdb.')}; "
            "pmdb.open; after = 'pmdb.api.program' in sys.modules; print(sorted(before), after)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['pmdb.cachedir', 'pmdb.codecache', 'pmdb.seal'] True"


def test_help_is_informative() -> None:
    assert "pmdb.open" in (pmdb.__doc__ or "") and "prog.run" in (pmdb.__doc__ or "")
    for thing in (pmdb.open, pmdb.Program, pmdb.Object, pmdb.Program.run, pmdb.Program.stack,
                  pmdb.Program.tasks, pmdb.Program.object, pmdb.Object.string_):
        assert thing.__doc__ and len(thing.__doc__) > 30, thing
    assert "open" in dir(pmdb) and "Program" in dir(pmdb)
    with pytest.raises(AttributeError):
        pmdb.no_such_name  # noqa: B018
