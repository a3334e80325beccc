"""pmdb's user-core unwinder against gdb, on cores built here and on the shared fixtures.

gdb is the oracle: for every thread it gives each frame's pc, its CFA ("frame
at" in ``info frame``), its function name and entry address; pmdb must agree on
all of them. The SPARC fixtures gdb cannot unwind (no sparc64 register reader
on this host), so there the oracle is the machine code: each caller's return
address must follow a call instruction into the frame below it.
"""

from __future__ import annotations

import json
from pathlib import Path

import capstone
import pytest

from pmdb.arch import by_name
from pmdb.config import Config
from pmdb.memory.space import Segment, SegmentedSpace
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.target import Target
from pmdb.unwind.frame import Frame
from pmdb.unwind.user import unwind_user
from tests.conftest import need_fixture
from tests.cores import (  # noqa: F401 - built_cores is a fixture
    BuiltCore,
    GdbThread,
    build_signal_core,
    built_cores,
    gdb_bt,
    gdb_threads,
    need_tools,
)

VARIANTS = ["x86_64-O0-kernel", "x86_64-O2-kernel", "x86_64-O0-gcore", "x86_64-O2-gcore",
            "i386-O2-kernel", "i386-O0-gcore"]
OUR_FUNCS = ["block_here", "level_c", "level_b", "level_a", "worker"]


def _open(path: Path) -> Target:
    return open_target(str(path), config=Config())


def _core(built: dict[str, BuiltCore], name: str) -> BuiltCore:
    if name not in built:
        pytest.skip(f"{name}: the kernel cannot write cores here (core_pattern)")
    return built[name]


def _name(target: Target, pc: int) -> str | None:
    hit = target.symbols.resolve(pc)
    return hit[0].name if hit else None


def _compare_thread(target: Target, gthread: GdbThread, frames: list[Frame]) -> None:
    """pcs and CFAs equal frame by frame; names equal where gdb and pmdb both have one."""
    want = gthread.real_frames()
    where = f"thread {gthread.lwp}"
    assert [hex(f.pc) for f in frames] == [hex(g.pc) for g in want], where
    for ours, theirs in zip(frames[:-1], want[:-1], strict=True):
        # gdb gives the outermost frame no CFA; every other one must match
        assert ours.cfa == theirs.cfa, f"{where} frame {ours.level} CFA"
    main = target.os.objects.main
    for ours, theirs in zip(frames, want, strict=True):
        hit = target.symbols.resolve(ours.pc)
        in_main = main is not None and main.contains(ours.pc)
        if in_main:
            assert hit is not None and hit[0].name == theirs.name, f"{where} {ours.pc:#x}"
        elif hit is not None and theirs.start is not None:
            # a library function may have several names (aliases): compare where it starts
            assert hit[0].addr == theirs.start, f"{where} {ours.pc:#x}: {hit[0].name} vs {theirs.name}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_thread_matches_gdb(built_cores: dict[str, BuiltCore], variant: str) -> None:  # noqa: F811
    core = _core(built_cores, variant)
    oracle = gdb_threads(core.exe, core.core)
    assert len(oracle) == core.nthreads
    target = _open(core.core)
    threads = {t.id: t for t in target.threads()}
    assert sorted(threads) == sorted(g.lwp for g in oracle)
    for gthread in oracle:
        frames = target.stack(threads[gthread.lwp])
        _compare_thread(target, gthread, frames)
        assert frames[-1].note, "the walk says why it ended"


@pytest.mark.parametrize("variant", ["x86_64-O2-kernel", "i386-O2-kernel"])
def test_worker_threads_show_the_program_calls(built_cores: dict[str, BuiltCore], variant: str) -> None:  # noqa: F811
    """Independently of gdb: each worker is block_here <- level_c <- level_b <- level_a <- worker."""
    core = _core(built_cores, variant)
    target = _open(core.core)
    workers = [t for t in target.threads() if t is not target.threads()[0]]
    assert len(workers) == core.nthreads - 1
    for t in workers:
        names = [_name(target, f.pc) for f in target.stack(t)]
        i = names.index("block_here")
        assert names[i:i + 5] == OUR_FUNCS
    crashed = [_name(target, f.pc) for f in target.stack(target.threads()[0])]
    assert crashed[:2] == ["crash_now", "main"]


@pytest.mark.parametrize("m32", [False, True], ids=["x86_64", "i386"])
def test_unwinding_through_a_signal_frame(tmp_path: Path, m32: bool) -> None:
    """The trampoline's CFI ('S' augmentation, register expressions) leads to the exact pc
    of the interrupted frame; gdb marks the same frame as its <signal handler called>."""
    need_tools("gcc", "gdb")
    core = build_signal_core(tmp_path, m32=m32)
    oracle = gdb_threads(core.exe, core.core)
    target = _open(core.core)
    frames = target.stack(target.threads()[0])
    _compare_thread(target, oracle[0], frames)
    kinds = [f.kind for f in oracle[0].real_frames()]
    assert frames[kinds.index("sigtramp")].note == "signal handler called"
    names = [_name(target, f.pc) for f in frames]
    assert names[:2] == ["crash_now", "handler"] and "spin" in names and "main" in names


# -- the shared fixtures -------------------------------------------------------------

FIXTURE_CORES = ["hashcrash-x86_64-O2.core", "hashcrash-x86_64-O2.gdb.core", "hashcrash-i386-O2.core"]


def _dollar_c(target: Target) -> list[str]:
    import io

    out = io.StringIO()
    session = Session(target, stdout=out, stderr=io.StringIO())
    assert session.run_line("$c")
    return out.getvalue().splitlines()


def _func_of_line(line: str) -> str:
    """``libc.so.6`main+0x1c(...)`` -> ``main``; a bare ``0x...()`` stays the address."""
    call = line.split("(", 1)[0]
    return call.split("`")[-1].split("+")[0]


@pytest.mark.parametrize("core_name", FIXTURE_CORES)
def test_dollar_c_equals_gdb_bt_on_fixtures(user_cores: Path, core_name: str) -> None:
    core = need_fixture(user_cores / core_name)
    exe = user_cores / json.loads((user_cores / "expected.json").read_text())[core_name]["executable"]
    lines = _dollar_c(_open(core))
    bt = gdb_bt(exe, core)                      # gdb's default: stops at main
    assert bt and bt[-1][1] == "main"
    assert [_func_of_line(x) for x in lines[:len(bt)]] == [name for _, name in bt]
    full = gdb_bt(exe, core, past_main=True)    # beyond main: the same frames, by pc
    assert len(lines) == len(full)
    for line, (pc, name) in zip(lines, full, strict=True):
        if name == "??":
            assert _func_of_line(line) == f"{pc:#x}"


def _sparc_call_target(exe: Path, pc: int) -> tuple[str, int | None]:
    """The instruction 8 bytes before a SPARC return address, and its direct target."""
    from elftools.elf.elffile import ELFFile

    with open(exe, "rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        off = pc - 8 - text["sh_addr"]
        code = text.data()[off:off + 4]
    md = capstone.Cs(capstone.CS_ARCH_SPARC, capstone.CS_MODE_BIG_ENDIAN | capstone.CS_MODE_V9)
    insn = next(md.disasm(code, pc - 8))
    target = int(insn.op_str, 16) if insn.op_str.startswith("0x") else None
    return insn.mnemonic, target


@pytest.mark.parametrize("opt", ["O0", "O2"])
def test_sparc64_backtrace_follows_the_calls(user_cores: Path, opt: str) -> None:
    core = need_fixture(user_cores / f"hashcrash-sparc64-{opt}.core")
    exe = user_cores / f"hashcrash-sparc64-{opt}"
    expected = json.loads((user_cores / "expected.json").read_text())[core.name]
    target = _open(core)
    frames = target.stack(target.threads()[0])
    names = [_name(target, f.pc) for f in frames]
    assert names[:2] == ["crash", "main"] and names[-1] == "_start"
    assert frames[0].pc == int(expected["crash_registers"]["tpc"], 16)
    for callee, caller in zip(frames, frames[1:], strict=False):
        mnemonic, dest = _sparc_call_target(exe, caller.pc)
        assert mnemonic == "call", f"{caller.pc:#x} does not follow a call"
        if dest is not None:   # a direct call lands on the callee's entry
            hit = target.symbols.resolve(callee.pc)
            assert hit is not None and hit[0].addr == dest


# -- damaged stacks: the walk ends with a note, never an exception ----------------------

class _NoObjects:
    def object_at(self, addr: int) -> None:
        return None


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_at(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]


def _stack_space(base: int, words: list[int]) -> SegmentedSpace:
    data = b"".join(w.to_bytes(8, "little") for w in words)
    return SegmentedSpace([Segment(base, len(data), _Bytes(data))])


def test_damaged_registers_stop_with_a_note(user_cores: Path) -> None:
    core = need_fixture(user_cores / "hashcrash-x86_64-O2.core")
    target = _open(core)
    regs = dict(target.threads()[0].registers)
    kw = {"arch": target.arch, "memory": target.memory, "objects": target.os.objects}
    frames = unwind_user({**regs, "rsp": 0x10}, **kw)
    assert len(frames) == 1 and "unreadable" in frames[0].note
    frames = unwind_user({**regs, "rip": 0}, **kw)
    assert len(frames) == 1 and "pc is 0" in frames[0].note


def test_frame_pointer_loop_and_limit() -> None:
    arch = by_name("x86_64")
    base = 0x7000
    # a frame whose saved %rbp points at itself
    space = _stack_space(base, [base, 0x1234])
    frames = unwind_user({"rip": 0x1000, "rsp": base - 16, "rbp": base}, arch=arch, memory=space,
                         objects=_NoObjects())
    assert len(frames) == 1 and "goes down" in frames[0].note
    # a long, well-formed chain cut by max_frames
    words: list[int] = []
    for i in range(20):
        words += [base + 16 * (i + 1), 0x2000 + i]
    space = _stack_space(base, words + [0, 0])
    frames = unwind_user({"rip": 0x1000, "rsp": base - 16, "rbp": base}, arch=arch, memory=space,
                         objects=_NoObjects(), max_frames=5)
    assert [f.pc for f in frames] == [0x1000, 0x2000, 0x2001, 0x2002, 0x2003]
    assert all(f.method == "fp" for f in frames[1:])
    assert frames[-1].note == "stopped after 5 frames"
