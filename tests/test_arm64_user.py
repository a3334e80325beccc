"""aarch64 Linux user cores against gdb-multiarch: threads, registers and every frame.

The core is made here: tests/data/threads.c cross-compiled static (with clang's
aarch64 target and Debian's arm64 cross libc: Debian 12's aarch64 gcc cannot be
installed beside gcc-multilib, which the i386 tests need) and run under qemu-aarch64 until its NULL store (qemu
writes the guest's core as ``qemu_<prog>_<date>_<pid>.core``). gdb-multiarch
on the same core is the oracle. Skipped when the cross tools are missing.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.target import Target
from tests.conftest import need_tools

SOURCE = Path(__file__).parent / "data" / "threads.c"
TOOLS = ("clang", "ld.lld", "qemu-aarch64", "gdb-multiarch")
CROSS_LIBC = Path("/usr/aarch64-linux-gnu/lib/libc.a")
COMPILE = ["clang", "--target=aarch64-linux-gnu", "-fuse-ld=lld"]
_THREAD = re.compile(r"^Thread \d+ \(.*LWP (\d+)\)")
_FRAME = re.compile(r"^#(\d+)\s+(?:(0x[0-9a-f]+) in )?(\S+) \(")
_REG = re.compile(r"^(x\d+|sp|pc)\s+(0x[0-9a-f]+)")


def _unlimited() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(executable, core) of the static threads program crashed under qemu-aarch64."""
    missing = [t for t in TOOLS if shutil.which(t) is None] + ([] if CROSS_LIBC.exists() else [str(CROSS_LIBC)])
    if missing:
        need_tools(f"needs {', '.join(missing)} (apt-get install qemu-user clang lld "
                   "libc6-dev-arm64-cross libgcc-12-dev-arm64-cross gdb-multiarch)")
    work = tmp_path_factory.mktemp("arm64-user")
    exe = work / "threads"
    subprocess.run([*COMPILE, "-g", "-O0", "-pthread", "-static", "-o", str(exe), str(SOURCE)],
                   check=True, capture_output=True, timeout=120)
    subprocess.run(["qemu-aarch64", str(exe)], cwd=work, preexec_fn=_unlimited, capture_output=True, timeout=120)
    cores = sorted(work.glob("qemu_threads_*.core"))
    if not cores:
        pytest.skip("qemu-aarch64 wrote no core here")
    return exe, cores[0]


def _gdb(exe: Path, core: Path) -> dict[int, tuple[dict[str, int], list[tuple[int | None, str]]]]:
    """Per LWP: gdb's frame-0 registers and its backtrace (pc or None, function)."""
    text = subprocess.run(
        ["gdb-multiarch", "-q", "-nx", "-batch", "-ex", "set pagination off", "-ex", "set width 0",
         "-ex", "thread apply all -ascending info registers", "-ex", "thread apply all -ascending bt",
         str(exe), "-c", str(core)], capture_output=True, text=True, timeout=120).stdout
    out: dict[int, tuple[dict[str, int], list[tuple[int | None, str]]]] = {}
    regs_pass: set[int] = set()
    lwp = 0
    for line in text.splitlines():
        if (m := _THREAD.match(line)) is not None:
            lwp = int(m.group(1))
            if lwp in out:
                regs_pass.add(lwp)
            out.setdefault(lwp, ({}, []))
        elif (m := _REG.match(line)) is not None and lwp not in regs_pass:
            out[lwp][0][m.group(1)] = int(m.group(2), 16)
        elif (m := _FRAME.match(line)) is not None and lwp:
            out[lwp][1].append((int(m.group(2), 16) if m.group(2) else None, m.group(3)))
    return out


def _open(exe: Path, core: Path) -> Target:
    return open_target(str(core), config=Config(), symbol_files=[str(exe)])


def test_threads_registers_and_stacks_match_gdb(built: tuple[Path, Path]) -> None:
    exe, core = built
    oracle = _gdb(exe, core)
    target = _open(exe, core)
    assert target.arch.name == "aarch64"
    threads = {t.id: t for t in target.threads()}
    assert sorted(threads) == sorted(oracle) and len(threads) == 5
    for lwp, (regs, frames) in oracle.items():
        mine = target.registers(threads[lwp])
        assert {r: mine[r] for r in regs} == regs, f"LWP {lwp} registers"
        stack = target.stack(threads[lwp])
        assert [f.pc for f in stack[1:len(frames)]] == [pc for pc, _ in frames[1:]], f"LWP {lwp} pcs"
        names = []
        for f in stack[:len(frames)]:
            hit = target.symbols.resolve(f.pc - 1 if f.level else f.pc)
            names.append(hit[0].name if hit else None)
        for (_, want), have in zip(frames, names, strict=True):
            # gdb names libc's aliases by its minimal symbols (read vs __libc_read)
            assert have == want or (have or "").endswith(want.lstrip("_")) or want in (have or ""), \
                f"LWP {lwp}: gdb {frames}, pmdb {names}"


def test_the_crashed_thread_is_in_crash_now(built: tuple[Path, Path]) -> None:
    exe, core = built
    target = _open(exe, core)
    first = target.threads()[0]
    names = [target.describe(f.pc).split("+")[0] for f in target.stack(first)]
    assert names[:2] == ["crash_now", "main"]
    workers = [[target.describe(f.pc).split("+")[0] for f in target.stack(t)] for t in target.threads()[1:]]
    for names in workers:
        i = names.index("block_here")
        assert names[i:i + 5] == ["block_here", "level_c", "level_b", "level_a", "worker"]
