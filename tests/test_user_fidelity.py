"""User cores of real programs, read the way gdb reads them (issue 15).

Cores are built here: tests/data/noreturn.c at -O2 -fomit-frame-pointer (64- and 32-bit,
stripped too), killed by abort() after calls that never return and by a SIGSEGV sent with
kill(2); and gcore snapshots of a running ``sleep``. gdb on the same core is the oracle.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session
from tests.conftest import need_tools
from tests.cores import (
    NORETURN_C,
    compile_noreturn,
    gcore_running,
    gdb_batch,
    gdb_threads,
    kernel_core,
    kernel_cores_possible,
    killed_core,
)


def _tools() -> None:
    missing = [t for t in ("gcc", "gdb", "gcore", "strip") if not shutil.which(t)]
    if missing:
        need_tools(f"needs {', '.join(missing)}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Executables and cores by name: nr64/nr32 (and -stripped) and their cores."""
    _tools()
    if not kernel_cores_possible():
        pytest.skip("the kernel cannot write cores into the cwd here (core_pattern)")
    root = tmp_path_factory.mktemp("fidelity")
    out: dict[str, Path] = {}
    for bits in (64, 32):
        exe = out[f"nr{bits}"] = compile_noreturn(root / f"nr{bits}", m32=bits == 32)
        out[f"nr{bits}-abort"] = kernel_core(exe, root / f"nr{bits}-abort", ["5"])
    for bits in (64, 32):
        out[f"nr{bits}-killed"] = killed_core(out[f"nr{bits}"], root / f"nr{bits}-killed",
                                              signal.SIGSEGV, ["9"])
    stripped = root / "stripped" / "nr64"
    stripped.parent.mkdir()
    compile_noreturn(stripped, strip=True)
    out["nr64-stripped"] = stripped
    out["nr64-stripped-abort"] = kernel_core(stripped, root / "nr64-stripped-abort", ["5"])
    (root / "gone").mkdir()
    gone = compile_noreturn(root / "gone" / "nr64", strip=True)
    out["gone-abort"] = kernel_core(gone, root / "gone-abort", ["5"])
    gone.unlink()                     # the executable is missing when the core is read
    return out


def _run(core: Path, *lines: str, symbol_files: tuple[str, ...] = ()) -> tuple[list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    session = Session(open_target(str(core), config=Config(), symbol_files=symbol_files),
                      stdout=out, stderr=err)
    for line in lines:
        assert session.run_line(line), err.getvalue()
    return out.getvalue().splitlines(), err.getvalue()


def _status(core: Path, *files: str) -> dict[str, str]:
    lines, _ = _run(core, "::status", symbol_files=files)
    return dict(re.match(r"^([^:]+):\s+(.*)$", x).groups() for x in lines)  # type: ignore[union-attr]


# -- a caller is named by its call, not by its return address ------------------------------

@pytest.mark.parametrize("bits", [64, 32])
def test_frames_after_noreturn_calls_are_named_as_gdb_names_them(built: dict[str, Path],
                                                                   bits: int) -> None:
    """die_now() ends in a call to abort() and handler() in a call to die_now(): their return
    addresses are the first bytes of the next functions. gdb names these frames die_now and
    handler (the .cold part of a function is that function to it)."""
    exe, core = built[f"nr{bits}"], built[f"nr{bits}-abort"]
    oracle = gdb_threads(exe, core)[0]
    lines, _ = _run(core, "$c", symbol_files=(str(exe),))
    want = oracle.real_frames()
    assert len(lines) == len(want)
    checked = 0
    for mine, theirs in zip(lines, want, strict=True):
        if theirs.name not in ("die_now", "handler", "main"):
            continue
        name = re.match(r"^([^+(]+)", mine).group(1)  # type: ignore[union-attr]
        assert name.removesuffix(".cold") == theirs.name, lines
        if name == theirs.name and theirs.start is not None:
            # the offset is the return address's own, as gdb's pc is
            assert mine == f"{name}+{theirs.pc - theirs.start:#x}()"
        checked += 1
    assert checked == 3


# -- signals -----------------------------------------------------------------------------

def _gdb_siginfo(exe: Path | None, core: Path, field: str) -> int:
    text = gdb_batch(exe, core, [f"print/d $_siginfo.{field}"])
    m = re.search(r"^\$\d+ = (-?\d+)$", text, re.M)
    assert m, text
    return int(m.group(1))


def test_a_sent_sigsegv_names_its_sender_not_a_fault_address(built: dict[str, Path]) -> None:
    """kill -SEGV fills si_pid/si_uid where a fault's si_addr would be (gdb's $_siginfo._kill)."""
    exe, core = built["nr64"], built["nr64-killed"]
    rows = _status(core, str(exe))
    assert rows["signal"] == "SIGSEGV (11), code SI_USER (0)"
    assert "fault address" not in rows
    pid, uid = _gdb_siginfo(exe, core, "_sifields._kill.si_pid"), _gdb_siginfo(exe, core, "_sifields._kill.si_uid")
    assert (pid, uid) == (os.getpid(), os.getuid())
    assert rows["sent by"] == f"pid {pid}, uid {uid}"


def test_only_the_thread_that_took_the_signal_is_marked(built: dict[str, Path]) -> None:
    """The kernel writes the fatal signal into every thread's pr_cursig; gdb's first thread
    (the one that took it) is the only one ::threads marks."""
    exe, core = built["nr64"], built["nr64-abort"]
    lwps = [t.lwp for t in gdb_threads(exe, core)]
    lines, _ = _run(core, "::threads", symbol_files=(str(exe),))
    rows = {int(x.split()[2 if x.startswith("*") else 1]): x for x in lines[1:]}
    assert sorted(rows) == sorted(lwps)
    marked = [tid for tid, row in rows.items() if "SIGABRT" in row]
    text = gdb_batch(exe, core, ["info threads"])
    current = int(re.search(r"^\*.*\(LWP (\d+)\)", text, re.M).group(1))  # type: ignore[union-attr]
    assert marked == [current]


def test_a_gcore_snapshot_was_not_killed(tmp_path: Path) -> None:
    """gcore of a running process: cursig 0, and NT_SIGINFO holds the SIGSTOP of gdb's
    attach. gdb says no "Program terminated with signal"; neither may pmdb."""
    _tools()
    sleep = shutil.which("sleep")
    assert sleep
    core, pid = gcore_running([sleep, "300"], tmp_path)
    text = gdb_batch(None, core, ["info threads"])
    assert "Program terminated" not in text and f"LWP {pid}" in text
    rows = _status(core)
    assert rows["signal"].startswith("none")
    assert "SIGSTOP" not in "".join(_run(core, "::status", "::threads")[0])


# -- the executable is the file the core says, or none --------------------------------------

def _nm_modules(core: Path, *files: str) -> tuple[list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    session = Session(open_target(str(core), config=Config(), symbol_files=files), stdout=out, stderr=err)
    session.run_line("::nm -m a.out")
    return out.getvalue().splitlines(), err.getvalue()


def test_a_missing_executable_is_not_replaced_by_libc(built: dict[str, Path]) -> None:
    """AT_PHDR says which NT_FILE mapping is the executable; when that file is gone the
    core has no executable symbols, and libc keeps its own name."""
    core = built["gone-abort"]
    rows = _status(core)
    assert rows["executable"].endswith("/gone/nr64")
    assert rows["executable file"].startswith("not found")
    lines, _ = _nm_modules(core)
    assert not any(re.search(r"\b(abort|__libc_start_main)$", x) for x in lines)
    frames, _ = _run(core, "$c")
    # abort's name: __GI_abort when libc6-dbg's DWARF names it (as gdb's bt does), else abort
    assert any(re.match(r"libc\.so\.6`(__GI_)?abort\+", x) for x in frames)


def test_an_executable_of_another_build_is_refused(built: dict[str, Path], tmp_path: Path) -> None:
    """-s with a file of the same name but another build-id: a warning, and no symbols from it."""
    other = tmp_path / "nr64"
    subprocess.run(["gcc", "-O1", "-pthread", "-o", str(other), str(NORETURN_C)], check=True)
    core = built["gone-abort"]
    rows = _status(core, str(other))
    assert rows["executable file"].startswith("not found")
    target = open_target(str(core), config=Config(), symbol_files=(str(other),))
    assert any("build-id mismatch" in w and str(other) in w for w in target.warnings)
    assert target.symbols.lookup("handler") is None


def test_a_stripped_executable_is_found_by_its_mapping(built: dict[str, Path]) -> None:
    """The executable found at its recorded path, build-id checked, owns ::nm -m a.out."""
    core = built["nr64-stripped-abort"]
    rows = _status(core)
    assert rows["executable file"] == f"{built['nr64-stripped']} (build-id matches)"
    lines, _ = _nm_modules(core)
    assert lines and not any(re.search(r"\babort$", x) for x in lines)


# -- the vDSO and the kernel's other special mappings ----------------------------------------

@pytest.mark.parametrize("bits", [64, 32])
def test_special_mappings_are_named_as_proc_maps_names_them(built: dict[str, Path], bits: int) -> None:
    """[heap], [stack], [vdso], [vvar] ([vvar_vclock]), [vsyscall]: the process's own
    /proc/PID/maps, read just before it was killed, is the oracle."""
    core = built[f"nr{bits}-killed"]
    want = {}
    for line in (core.parent / "maps").read_text().splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[5].startswith("["):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            want[(lo, hi)] = parts[5]
    assert "[vdso]" in want.values() and "[stack]" in want.values() and "[heap]" in want.values()
    lines, _ = _run(core, "::mappings", symbol_files=(str(built[f"nr{bits}"]),))
    ours = {}
    for line in lines[1:]:
        lo, hi, _perms, _off, path = line.split()[:5]
        ours[(int(lo, 16), int(hi, 16))] = path
    for span, label in want.items():
        if span[0] in {lo for lo, _ in ours}:       # gcore and the kernel leave some out
            assert ours.get(span) == label, (hex(span[0]), label)
    assert sorted(want.values()) == sorted(v for v in ours.values() if v.startswith("[") and v != "[anon]")


def test_i386_blocked_threads_stop_in_kernel_vsyscall(built: dict[str, Path]) -> None:
    """Frame 0 of each thread blocked in a system call: __kernel_vsyscall, from the vDSO's
    symbols and CFI read out of the core, and the callers after it, as gdb's bt."""
    exe, core = built["nr32"], built["nr32-abort"]
    oracle = gdb_threads(exe, core)
    target = open_target(str(core), config=Config(), symbol_files=(str(exe),))
    for gthread in oracle:
        assert gthread.frames[0].name == "__kernel_vsyscall"
        thread = target.thread_by_id(gthread.lwp)
        frames = target.stack(thread)
        assert [f.pc for f in frames] == [f.pc for f in gthread.real_frames()]
        assert target.describe(frames[0].pc).startswith("linux-gate.so.1`__kernel_vsyscall+")


# -- ::stacks -------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [64, 32])
def test_stacks_groups_threads_by_their_frames(built: dict[str, Path], bits: int) -> None:
    """The two threads blocked in read() form one group, main's abort another; the groups'
    thread ids are gdb's LWPs, and ::stacks -c blocker | ... hands on exactly those."""
    exe, core = built[f"nr{bits}"], built[f"nr{bits}-abort"]
    oracle = gdb_threads(exe, core)
    readers = sorted(t.lwp for t in oracle if any(f.name == "blocker" for f in t.frames))
    main = [t.lwp for t in oracle if any(f.name == "main" for f in t.frames)]
    assert len(readers) == 2 and len(main) == 1
    lines, _ = _run(core, "::stacks -a", symbol_files=(str(exe),))
    assert lines[0].split() == ["THREAD", "COUNT"]
    heads = [x.split() for x in lines[1:] if x and not x.startswith(" ")]
    counted = [h for h in heads if len(h) == 2]
    assert [h[1] for h in counted] == ["2", "1"] and int(counted[0][0]) in readers
    assert counted[1][0] == str(main[0])
    assert sorted(int(h[0]) for h in heads) == sorted(readers + main)
    piped, _ = _run(core, "::stacks -c blocker | ::findstack", symbol_files=(str(exe),))
    heads = [re.match(r"stack pointer for thread (\d+):", x) for x in piped]
    assert sorted(int(m.group(1)) for m in heads if m) == readers


# -- x87, SSE and AVX registers --------------------------------------------------------------

def _gdb_fp(exe: Path, core: Path, lwp: int, nxmm: int) -> dict[str, int]:
    """gdb's x87 registers (st raw bits from info all-registers) and xmm as uint128."""
    cmds = [f"thread find LWP {lwp}", "echo PMDB-FP\\n", "info all-registers"]
    cmds += [f"p/x $xmm{i}.uint128" for i in range(nxmm)]
    text = gdb_batch(exe, core, ["set print repeats unlimited", *cmds]).split("PMDB-FP\n", 1)[1]
    out: dict[str, int] = {}
    for m in re.finditer(r"^(st\d)\s+\S+\s+\(raw (0x[0-9a-f]+)\)$", text, re.M):
        out[m.group(1)] = int(m.group(2), 16)
    for m in re.finditer(r"^(fctrl|fstat|ftag|fiseg|fioff|foseg|fooff|fop|mxcsr)\s+(0x[0-9a-f]+)", text, re.M):
        out[m.group(1)] = int(m.group(2), 16)
    for i, m in enumerate(re.finditer(r"^\$\d+ = (0x[0-9a-f]+)$", text, re.M)):
        out[f"xmm{i}"] = int(m.group(1), 16)
    return out


def _fsave_note(target: object, index: int) -> dict[str, int]:
    """i386's NT_PRFPREG (user_i387_ia32_struct, FSAVE layout) of the index-th thread: the
    kernel converts FXSAVE to it itself (convert_from_fxsr), full tag word included."""
    import struct

    notes = target.os.core.notes  # type: ignore[attr-defined]
    starts = [i for i, n in enumerate(notes) if n.type == 1 and n.name == "CORE"]
    end = starts[index] if index < len(starts) else len(notes)
    desc = next(n.desc for n in notes[starts[index - 1]:end] if n.type == 2 and n.name == "CORE")
    cwd, swd, twd = struct.unpack_from("<III", desc, 0)
    out = {"fctrl": cwd & 0xFFFF, "fstat": swd & 0xFFFF, "ftag": twd & 0xFFFF}
    for i in range(8):
        out[f"st{i}"] = int.from_bytes(desc[28 + 10 * i:38 + 10 * i], "little")
    return out


@pytest.mark.parametrize("bits", [64, 32])
def test_fp_registers_match_gdb_info_all_registers(built: dict[str, Path], bits: int) -> None:
    """::regs -a of each thread: st0-7 raw, the x87 control words (ftag rebuilt from the
    abridged FXSAVE byte), mxcsr and xmm, equal to gdb's on the same core."""
    exe, core = built[f"nr{bits}"], built[f"nr{bits}-abort"]
    nxmm = 16 if bits == 64 else 8
    target = open_target(str(core), config=Config(), symbol_files=(str(exe),))
    for thread in target.threads():
        theirs = _gdb_fp(exe, core, thread.id, nxmm)
        if not theirs and bits == 32:
            # gdb 13 on a kernel whose XSTATE note is smaller than its AVX-512 layout shows
            # i386's x87 registers <unavailable>: the kernel's own FSAVE note is the oracle
            theirs = _fsave_note(target, thread.index)
        assert len(theirs) >= 8 + 3, sorted(theirs)
        lines, _ = _run(core, f"0t{thread.id}::regs -a", symbol_files=(str(exe),))
        ours = {m.group(1): int(m.group(2), 16) for m in
                (re.match(r"^%(\w+)\s+= (0x[0-9a-f]+)", x) for x in lines) if m}
        assert {k: ours.get(k) for k in theirs} == theirs
        for i in range(nxmm):     # ymm's low half is xmm
            assert ours[f"ymm{i}"] & ((1 << 128) - 1) == ours[f"xmm{i}"]


@pytest.mark.parametrize("bits", [64, 32])
def test_abort_and_signal_trampoline_frames_are_gdbs(built: dict[str, Path], bits: int,
                                                     tmp_path: Path) -> None:
    """Every frame of an abort() core and of a crash inside a signal handler, by pc and by
    gdb's name: the trampoline by its own pc (__restore_rt, __kernel_sigreturn: the byte
    before it is no function's), libc's frames by DWARF when libc6-dbg has it."""
    from tests.cores import build_signal_core, gdb_frame_names, pmdb_frames, same_frames

    sig = build_signal_core(tmp_path, m32=bits == 32)
    for exe, core in ((built[f"nr{bits}"], built[f"nr{bits}-abort"]), (sig.exe, sig.core)):
        target = open_target(str(core), config=Config())
        same_frames(pmdb_frames(target), gdb_frame_names(exe, core))
    names = [n for frames in pmdb_frames(open_target(str(sig.core), config=Config())).values() for _, n in frames]
    # __restore_rt is in libc6-dbg's symbols only; the vDSO always names __kernel_sigreturn
    assert names[:2] == ["crash_now", "handler"] and (bits == 64 or names[2] == "__kernel_sigreturn")
