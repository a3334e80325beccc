"""Cores built at test time (gcc, crashed by the kernel, and taken by gdb's gcore), checked against gdb.

gdb is the oracle: thread count, each thread's LWP and registers (``thread apply
all info registers``), and the globals the program printed before crashing.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.target import Target

pytestmark = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("gdb")),
                                reason="needs gcc and gdb")

NTHREADS = 3

PROGRAM = r"""
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

long g_counter = 0x1234;
long g_tids[8];
static pthread_barrier_t ready;

__attribute__((noinline)) static void park(int depth)
{
    if (depth > 0) {
        park(depth - 1);
        return;
    }
    pthread_barrier_wait(&ready);
    for (;;)
        pause();
}

static void *worker(void *arg)
{
    park((int)(long)arg);
    return NULL;
}

int main(void)
{
    pthread_t t[NTHREADS];
    pthread_barrier_init(&ready, NULL, NTHREADS + 1);
    for (long i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(i + 1));
    pthread_barrier_wait(&ready);
    usleep(100000);   /* let every worker reach pause() */
    g_counter = 0xfeedface;
    printf("g_counter=%#lx &g_counter=%p\n", g_counter, (void *)&g_counter);
    fflush(stdout);
    *(volatile int *)16 = 1;
    return 0;
}
"""

# registers gdb prints that are in NT_PRSTATUS, per arch (gdb name -> pmdb name)
GDB_REGS = {
    "x86_64": {n: n for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10",
                              "r11", "r12", "r13", "r14", "r15", "rip", "eflags", "cs", "ss", "ds",
                              "es", "fs", "gs", "fs_base", "gs_base")},
    "i386": {n: n for n in ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags",
                            "cs", "ss", "ds", "es", "fs", "gs")},
}


@dataclass
class Built:
    exe: Path
    core: Path
    stdout: str
    arch: str


def _build(tmp: Path, bits: int) -> Path:
    src = tmp / "threads.c"
    src.write_text(PROGRAM)
    exe = tmp / f"threads{bits}"
    cmd = ["gcc", "-g", "-O0", "-pthread", f"-DNTHREADS={NTHREADS}", "-o", str(exe), str(src)]
    if bits == 32:
        cmd.insert(1, "-m32")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot build a {bits}-bit program: {res.stderr.strip()[:200]}")
    return exe


def _kernel_core(tmp: Path, bits: int) -> Built:
    if Path("/proc/sys/kernel/core_pattern").read_text().strip() not in ("core", "core.%p"):
        pytest.skip("kernel core_pattern does not write cores into the cwd")
    exe = _build(tmp, bits)
    res = subprocess.run(["bash", "-c", f"ulimit -c unlimited; exec {exe}"], cwd=tmp,
                         capture_output=True, text=True, timeout=60)
    cores = sorted(tmp.glob("core*"))
    if res.returncode != -11 and res.returncode != 139 or not cores:
        pytest.skip(f"no kernel core (exit {res.returncode})")
    return Built(exe, cores[0], res.stdout, "x86_64" if bits == 64 else "i386")


def _gdb_core(tmp: Path, bits: int) -> Built:
    exe = _build(tmp, bits)
    core = tmp / "gdb.core"
    res = subprocess.run(["gdb", "-q", "-batch", "-ex", "run", "-ex", f"generate-core-file {core}", str(exe)],
                         cwd=tmp, capture_output=True, text=True, timeout=120)
    if not core.exists():
        pytest.skip(f"gdb could not write a core: {res.stderr.strip()[-200:]}")
    out = "\n".join(line for line in res.stdout.splitlines() if line.startswith("g_counter="))
    return Built(exe, core, out, "x86_64" if bits == 64 else "i386")


@pytest.fixture(scope="module", params=[("kernel", 64), ("gdb", 64), ("kernel", 32)],
                ids=["kernel-x86_64", "gdb-x86_64", "kernel-i386"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    how, bits = request.param
    tmp = tmp_path_factory.mktemp(f"{how}{bits}")
    return _kernel_core(tmp, bits) if how == "kernel" else _gdb_core(tmp, bits)


def gdb_threads(b: Built) -> dict[int, dict[str, int]]:
    """LWP -> register values, from gdb on the same core."""
    res = subprocess.run(["gdb", "-q", "-batch", "-nx", "-ex", "info threads", "-ex",
                          "thread apply all info registers", str(b.exe), str(b.core)],
                         capture_output=True, text=True, timeout=120)
    threads: dict[int, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in res.stdout.splitlines():
        head = re.match(r"^Thread \d+ \(.*?LWP (\d+)\)", line)
        if head:
            current = threads.setdefault(int(head.group(1)), {})
            continue
        reg = re.match(r"^(\w+)\s+(0x[0-9a-f]+)\s", line)
        if reg and current is not None:
            current[reg.group(1)] = int(reg.group(2), 16)
    assert threads, res.stdout + res.stderr
    return threads


@pytest.fixture(scope="module")
def target(built: Built) -> Target:
    return open_target(str(built.core), config=Config(), symbol_files=[str(built.exe)])


def test_thread_count_and_ids_match_gdb(built: Built, target: Target) -> None:
    oracle = gdb_threads(built)
    assert len(target.threads()) == NTHREADS + 1
    assert {t.id for t in target.threads()} == set(oracle)


def test_every_threads_registers_match_gdb(built: Built, target: Target) -> None:
    oracle = gdb_threads(built)
    names = GDB_REGS[built.arch]
    for t in target.threads():
        want = oracle[t.id]
        compared = 0
        for gdb_name, ours in names.items():
            if gdb_name in want:
                assert t.registers[ours] == want[gdb_name], (t.id, gdb_name)
                compared += 1
        assert compared >= 16


def test_dollar_r_prints_the_registers(built: Built, target: Target) -> None:
    """`tid::regs` shows each thread's registers as gdb has them."""
    oracle = gdb_threads(built)
    session = Session(target, stdout=io.StringIO(), stderr=io.StringIO())
    for t in target.threads():
        out = io.StringIO()
        session.stdout = out
        assert session.run_line(f"0t{t.id}::regs")
        shown = {m.group(1): int(m.group(2), 16) for m in re.finditer(r"%(\w+)\s*= 0x([0-9a-f]+)", out.getvalue())}
        for gdb_name, ours in GDB_REGS[built.arch].items():
            if gdb_name in oracle[t.id]:
                assert shown[ours] == oracle[t.id][gdb_name], (t.id, gdb_name)


def test_walk_thread_and_signal(built: Built, target: Target) -> None:
    out = io.StringIO()
    session = Session(target, stdout=out, stderr=io.StringIO())
    assert session.run_line("::walk thread")
    assert [int(x, 16) for x in out.getvalue().split()] == [t.id for t in target.threads()]
    rows = dict(target.os.status())
    assert rows["signal"].startswith("SIGSEGV (11)")
    assert rows["threads"] == str(NTHREADS + 1)
    if "fault address" in rows:
        assert rows["fault address"] == "0x10"


def test_global_reads_as_printed(built: Built, target: Target) -> None:
    m = re.search(r"g_counter=(0x[0-9a-f]+) &g_counter=(0x[0-9a-f]+)", built.stdout)
    assert m, built.stdout
    addr = int(m.group(2), 16)
    sym = target.symbols.lookup("g_counter")
    assert sym is not None and sym.addr == addr
    assert target.memory.read_int(addr, target.arch.ptr_size) == int(m.group(1), 16)
