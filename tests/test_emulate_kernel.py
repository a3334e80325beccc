"""::emulate on the Linux 6.1 kernel dump (makedumpfile -d 31, KASLR): kernel functions run on
the emulated CPU over the dump's memory.

Oracles: crash's ``ps`` in crash-oracle.txt (every pid's task_struct, and which task was on
each CPU), the kernel's hash functions re-implemented here from their definitions in
fs/namei.c and include/linux/jhash.h (over bytes read from the dump), kallsyms and BTF
facts (per-CPU offsets, struct offsets), the kdump file's own bitmap of excluded pages,
and the kernel's ``__bug_table`` decoded here from its layout.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from pmdb.session import Session
from pmdb.symbols.kmodules import RegistryOffsets
from pmdb.target import Target
from tests.linux_session import crash_ps, target_for
from tests.linux_vmcore import KASLR, NOKASLR, README

DUMP = "dump.202611221942"
M64 = (1 << 64) - 1


@pytest.fixture(scope="module")
def target() -> Target:
    return target_for(KASLR, DUMP)


class Lines:
    """One session on the dump; ``run`` gives (ok, stdout, stderr) of one line."""

    def __init__(self, target: Target) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.session = Session(target, stdout=self.out, stderr=self.err)

    def run(self, line: str) -> tuple[bool, str, str]:
        for buf in (self.out, self.err):
            buf.seek(0)
            buf.truncate()
        ok = self.session.run_line(line)
        return ok, self.out.getvalue(), self.err.getvalue()

    def value(self, line: str) -> int:
        ok, text, err = self.run(line)
        assert ok, err
        last = text.rstrip("\n").splitlines()[-1]
        assert last.startswith("return: 0x"), text
        return int(last.split()[-1], 16)


def _addr(target: Target, name: str) -> int:
    sym = target.symbols.lookup(name)
    assert sym is not None, name
    return sym.addr


# -- find_task_by_pid_ns over every pid ------------------------------------------------------------

@pytest.mark.parametrize("folder,name", [(KASLR, DUMP), (NOKASLR, "dump.202611221946")],
                         ids=["kaslr", "nokaslr"])
def test_find_task_by_pid_ns_for_every_pid_in_crash_ps(folder: Path, name: str) -> None:
    """The kernel's own idr walk (radix tree nodes, struct pid, pid->tasks) finds the task
    crash lists for each pid (idle tasks, pid 0, are not in the idr)."""
    rows = [r for r in crash_ps(folder) if r.pid != 0]
    assert len(rows) >= 50
    lines = Lines(target_for(folder, name))
    start = time.perf_counter()
    found = {r.pid: lines.value(f"find_task_by_pid_ns::emulate 0t{r.pid} init_pid_ns") for r in rows}
    elapsed = time.perf_counter() - start
    assert found == {r.pid: r.task for r in rows}
    print(f"\n{folder.name}: find_task_by_pid_ns for {len(rows)} pids: {elapsed:.3f} s "
          f"({1000 * elapsed / len(rows):.2f} ms per call)")


def test_a_pid_nobody_has_gives_null(target: Target) -> None:
    used = {r.pid for r in crash_ps(KASLR)}
    free = next(p for p in range(200, 400) if p not in used)
    assert Lines(target).value(f"find_task_by_pid_ns::emulate 0t{free} init_pid_ns") == 0


def test_find_task_by_vpid_reads_current_through_gs(target: Target) -> None:
    """find_task_by_vpid looks in current's pid namespace: current comes from %gs."""
    rows = [r for r in crash_ps(KASLR) if r.pid in (1, 96, 102)]
    lines = Lines(target)
    for r in rows:
        assert lines.value(f"find_task_by_vpid::emulate 0t{r.pid}") == r.task


# -- per-CPU data: the cpu option and the GS base -------------------------------------------------

@pytest.mark.parametrize("cpu", [0, 1])
def test_current_is_the_task_crash_shows_on_that_cpu(target: Target, tmp_path: Path, cpu: int) -> None:
    """__rcu_read_lock increments current->rcu_read_lock_nesting (PREEMPT_RCU): the one store
    it makes lands in the task crash marks active ('>') on the chosen CPU."""
    active = {r.cpu: r.task for r in crash_ps(KASLR) if r.active}
    nesting = RegistryOffsets(target.types).offsetof("task_struct", "rcu_read_lock_nesting")
    cfg = tmp_path / "cpu.toml"
    cfg.write_text(f"cpu = {cpu}\n")
    ok, text, err = Lines(target).run(f"__rcu_read_lock::emulate -f {cfg}")
    assert ok, err
    assert _written(text) == [active[cpu] + nesting], text


def _written(text: str) -> list[int]:
    """The addresses of the summary's 'writes:' lines."""
    return [int(line.split()[0], 16) for line in text.splitlines()
            if line.startswith("  0x") and " = " in line]


def test_gs_base_flag_overrides_the_cpu(target: Target) -> None:
    """-r gs_base=0: the per-CPU read of current_task goes to the symbol's bare offset."""
    offset = _addr(target, "current_task")
    ok, _, err = Lines(target).run("__rcu_read_lock::emulate -r gs_base=0")
    assert not ok
    assert len(err.strip().splitlines()) == 1
    assert f"read from {offset:#x} " in err, err


def test_no_such_cpu(target: Target, tmp_path: Path) -> None:
    cfg = tmp_path / "cpu.toml"
    cfg.write_text("cpu = 7\n")
    ok, _, err = Lines(target).run(f"__rcu_read_lock::emulate -f {cfg}")
    assert not ok and "no CPU 7" in err and len(err.strip().splitlines()) == 1


# -- hash functions against Python re-implementations ----------------------------------------------

GOLDEN_RATIO_64 = 0x61C8864680B583EB


def _rol64(x: int, n: int) -> int:
    return ((x << n) | (x >> (64 - n))) & M64


def full_name_hash(salt: int, name: bytes, length: int) -> int:
    """fs/namei.c, CONFIG_DCACHE_WORD_ACCESS on 64-bit little-endian: whole words mixed by
    HASH_MIX, the last partial word masked by bytemask_from_count, folded by fold_hash."""
    x, y = 0, salt & M64
    pos, left = 0, length
    while left >= 8:
        x ^= int.from_bytes(name[pos:pos + 8], "little")
        y ^= x
        x = _rol64(x, 12)
        x = (x + y) & M64
        y = _rol64(y, 45)
        y = (y * 9) & M64
        pos += 8
        left -= 8
    if left:
        x ^= int.from_bytes(name[pos:pos + left], "little")
    y ^= (x * GOLDEN_RATIO_64) & M64
    y = (y * GOLDEN_RATIO_64) & M64
    return y >> 32


def _rol32(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


def _jhash_mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    m = 0xFFFFFFFF
    a = ((a - c) & m) ^ _rol32(c, 4)
    c = (c + b) & m
    b = ((b - a) & m) ^ _rol32(a, 6)
    a = (a + c) & m
    c = ((c - b) & m) ^ _rol32(b, 8)
    b = (b + a) & m
    a = ((a - c) & m) ^ _rol32(c, 16)
    c = (c + b) & m
    b = ((b - a) & m) ^ _rol32(a, 19)
    a = (a + c) & m
    c = ((c - b) & m) ^ _rol32(b, 4)
    b = (b + a) & m
    return a, b, c


def _jhash_final(a: int, b: int, c: int) -> int:
    m = 0xFFFFFFFF
    c = ((c ^ b) - _rol32(b, 14)) & m
    a = ((a ^ c) - _rol32(c, 11)) & m
    b = ((b ^ a) - _rol32(a, 25)) & m
    c = ((c ^ b) - _rol32(b, 16)) & m
    a = ((a ^ c) - _rol32(c, 4)) & m
    b = ((b ^ a) - _rol32(a, 14)) & m
    return ((c ^ b) - _rol32(b, 24)) & m


def jhash(key: bytes, initval: int) -> int:
    """include/linux/jhash.h (lookup3): 12-byte blocks mixed, the last 1..12 bytes added
    bytewise (as zero-padded little-endian words) and the final mix; no final for length 0."""
    m = 0xFFFFFFFF
    a = b = c = (0xDEADBEEF + len(key) + initval) & m
    k, length = 0, len(key)
    while length > 12:
        a = (a + int.from_bytes(key[k:k + 4], "little")) & m
        b = (b + int.from_bytes(key[k + 4:k + 8], "little")) & m
        c = (c + int.from_bytes(key[k + 8:k + 12], "little")) & m
        a, b, c = _jhash_mix(a, b, c)
        length -= 12
        k += 12
    if length == 0:
        return c
    tail = key[k:k + length] + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    return _jhash_final(a, b, c)


def test_full_name_hash_matches_fs_namei(target: Target) -> None:
    banner = _addr(target, "linux_banner")
    text = target.memory.read(banner, 40)
    lines = Lines(target)
    for salt in (0, 0xFFFF8BE101234560):
        for length in (0, 1, 7, 8, 9, 15, 16, 23, 40):
            got = lines.value(f"full_name_hash::emulate {salt:#x} linux_banner 0t{length}")
            assert got == full_name_hash(salt, text, length), (salt, length)


def test_hashlen_string_matches_fs_namei(target: Target) -> None:
    """hashlen_string finds the NUL itself: hash in the low 32 bits, length above."""
    off = RegistryOffsets(target.types)
    release = (_addr(target, "init_uts_ns") + off.offsetof("uts_namespace", "name")
               + off.offsetof("new_utsname", "release"))
    name = target.memory.cstring(release, 65)
    assert name.startswith(b"6.1.0")
    got = Lines(target).value(f"hashlen_string::emulate 0 {release:#x}")
    assert got == len(name) << 32 | full_name_hash(0, name, len(name))


def test_jhash_matches_include_linux_jhash(target: Target) -> None:
    """jhash is inline; GCC left out-of-line copies (local symbols named jhash) in vmlinux."""
    copies = [s for s in target.symbols.search("jhash") if s.name == "jhash" and s.kind == "func"]
    assert copies
    banner = _addr(target, "linux_banner")
    text = target.memory.read(banner, 40)
    lines = Lines(target)
    for fn in copies[:2]:
        for length, initval in ((0, 0), (1, 5), (11, 0), (12, 0x1234), (13, 0), (24, 7), (40, 0xFFFFFFFF)):
            got = lines.value(f"{fn.addr:#x}::emulate linux_banner 0t{length} {initval:#x}")
            assert got & 0xFFFFFFFF == jhash(text[:length], initval), (hex(fn.addr), length)


# -- bad input: one line each, the session goes on ------------------------------------------------

def _excluded_direct_map_page(target: Target) -> int:
    """A direct-map address whose page makedumpfile left out (by the kdump file's bitmaps)."""
    dump = target.os.dump
    base = README[KASLR]["page_offset_base"]
    for pfn in range(0x1000, 0xC000):
        reason = dump.absent_reason(pfn)
        if reason is not None and "excluded" in reason:
            return base + pfn * 0x1000
    pytest.fail("no excluded page in the dump")


def test_a_read_from_an_excluded_page_names_the_address(target: Target) -> None:
    """find_task_by_pid_ns with a pid namespace in a page the dump left out: its first read
    there is idr_find's ``id - idr->idr_base``."""
    page = _excluded_direct_map_page(target)
    ns = page + 0x100
    off = RegistryOffsets(target.types)
    idr_base = ns + off.offsetof("pid_namespace", "idr") + off.offsetof("idr", "idr_base")
    idr_find = _addr(target, "idr_find")
    lines = Lines(target)
    ok, _, err = lines.run(f"find_task_by_pid_ns::emulate 1 {ns:#x}")
    assert not ok
    assert len(err.strip().splitlines()) == 1, err
    assert f"fault at {idr_find:#x}: read from {idr_base:#x} " in err, err
    assert "excluded from the dump" in err, err
    # the session goes on
    init = next(r for r in crash_ps(KASLR) if r.pid == 1)
    assert lines.value("find_task_by_pid_ns::emulate 1 init_pid_ns") == init.task


def test_an_unknown_function(target: Target) -> None:
    ok, _, err = Lines(target).run("no_such_kernel_function::emulate 1 2")
    assert not ok
    assert len(err.strip().splitlines()) == 1 and "no_such_kernel_function" in err, err


def test_budget_exhausted_in_a_loop(target: Target) -> None:
    """strlen's byte loop over linux_banner (longer than the budget allows)."""
    strlen = target.symbols.lookup("strlen")
    assert strlen is not None
    banner = target.memory.cstring(_addr(target, "linux_banner"), 512)
    assert len(banner) > 100
    lines = Lines(target)
    ok, _, err = lines.run("strlen::emulate -n 0t200 linux_banner")
    assert not ok and len(err.strip().splitlines()) == 1, err
    assert "budget exhausted" in err and "after 200 instructions" in err, err
    at = int(err.split("exhausted at ")[1].split()[0].rstrip(":"), 16)
    assert strlen.addr <= at < strlen.addr + strlen.size
    # with room it returns the length
    assert lines.value("strlen::emulate linux_banner") == len(banner)


def test_jump_to_self_runs_into_the_default_budget(target: Target) -> None:
    """A patched-in `jmp .` under the default budget (the timed, uncounted path)."""
    ok, _, err = Lines(target).run("strlen::emulate -P strlen=0xfeeb:2 linux_banner")
    assert not ok and len(err.strip().splitlines()) == 1 and "budget exhausted" in err, err


# -- BUG() and WARN(): ud2 and the kernel's __bug_table ---------------------------------------------

def _bug_entries(target: Target, lo: int, hi: int) -> dict[int, tuple[str, int, int]]:
    """ud2 address -> (file, line, flags) for __bug_table entries in [lo, hi), decoded here:
    struct bug_entry with relative pointers (offsets from BTF)."""
    bug = target.types.find("struct bug_entry")
    assert bug is not None
    off = {m.name: m.offset for m in bug.members}
    start, stop = _addr(target, "__start___bug_table"), _addr(target, "__stop___bug_table")
    raw = target.memory.read(start, stop - start)
    out = {}
    for pos in range(0, len(raw), bug.size):
        at = start + pos
        ud2 = at + off["bug_addr_disp"] + int.from_bytes(raw[pos:pos + 4], "little", signed=True)
        ud2 &= M64
        if lo <= ud2 < hi:
            fpos = pos + off["file_disp"]
            file_at = at + off["file_disp"] + int.from_bytes(raw[fpos:fpos + 4], "little", signed=True)
            file = target.memory.cstring(file_at & M64, 128).decode()
            line = int.from_bytes(raw[pos + off["line"]:pos + off["line"] + 2], "little")
            flags = int.from_bytes(raw[pos + off["flags"]:pos + off["flags"] + 2], "little")
            out[ud2] = (file, line, flags)
    return out


def test_warn_is_stepped_over_as_the_kernel_does(target: Target) -> None:
    """__put_task_struct on a live task: WARN_ON(!tsk->exit_state) and WARN_ON(usage) fire;
    the kernel reports them and goes on, so does the emulation (the dump is not changed)."""
    fn = target.symbols.lookup("__put_task_struct")
    assert fn is not None
    warns = {a: e for a, e in _bug_entries(target, fn.addr, fn.addr + fn.size).items() if e[2] & 1}
    assert warns
    task = next(r for r in crash_ps(KASLR) if r.pid == 96).task
    before = target.memory.read(task, 0x1000)
    ok, text, err = Lines(target).run(f"__put_task_struct::emulate {task:#x}")
    assert ok, err
    notes = [line for line in text.splitlines() if line.startswith("note: WARNING at ")]
    first_two = sorted(warns)[:2]
    for note, ud2 in zip(notes, first_two, strict=False):
        file, line, _ = warns[ud2]
        assert note.startswith(f"note: WARNING at {file}:{line} ({ud2:#x})"), notes
    assert len(notes) >= 2
    # the call went on to free the task (stores into the copy), the dump is as it was
    assert _written(text)
    assert target.memory.read(task, 0x1000) == before


def test_bug_stops_with_its_source_line(target: Target) -> None:
    """Start on a BUG()'s ud2 (an entry without BUGFLAG_WARNING)."""
    text_lo, text_hi = _addr(target, "_stext"), _addr(target, "_etext")
    bugs = {a: e for a, e in _bug_entries(target, text_lo, text_hi).items() if not e[2] & 1}
    ud2, (file, line, _) = sorted(bugs.items())[0]
    assert target.memory.read(ud2, 2) == b"\x0f\x0b"
    ok, _, err = Lines(target).run(f"strlen::emulate -r rip={ud2:#x} linux_banner")
    assert not ok and len(err.strip().splitlines()) == 1, err
    assert f"BUG() (ud2) at {file}:{line}" in err, err


# -- where the call runs: the thread's kernel stack, or a scratch range -----------------------------

def _task_stack(target: Target, task: int) -> tuple[int, int]:
    off = RegistryOffsets(target.types).offsetof("task_struct", "stack")
    base = target.memory.u64(task + off)
    return base, base + target.symbols.lookup("init_stack").size   # THREAD_SIZE


def test_the_call_runs_on_the_chosen_threads_kernel_stack(target: Target, tmp_path: Path) -> None:
    """thread = 96 (cat, asleep): the call's stores (its return address first) land on that
    task's kernel stack, and current is still the panic CPU's task."""
    cat = next(r for r in crash_ps(KASLR) if r.pid == 96)
    cfg = tmp_path / "thread.toml"
    cfg.write_text("thread = 96\n")
    ok, text, err = Lines(target).run(f"find_task_by_pid_ns::emulate -f {cfg} 0t96 init_pid_ns")
    assert ok, err
    assert text.splitlines()[-1] == f"return: {cat.task:#x}"
    lo, hi = _task_stack(target, cat.task)
    assert _written(text) and all(lo <= a < hi for a in _written(text)), (hex(lo), text)


def test_without_the_stack_in_the_dump_the_call_gets_a_scratch_stack(target: Target,
                                                                   tmp_path: Path) -> None:
    """stack_gap 1M below the thread's sp is off its stack (not in the dump): the stack is
    zero pages in the x86-64 guard hole (0xffff800000000000-0xffff87ffffffffff, which Linux
    never maps with 4-level paging)."""
    cfg = tmp_path / "gap.toml"
    cfg.write_text("stack_gap = 1048576\n")
    init = next(r for r in crash_ps(KASLR) if r.pid == 1)
    ok, text, err = Lines(target).run(f"find_task_by_pid_ns::emulate -f {cfg} 1 init_pid_ns")
    assert ok, err
    assert text.splitlines()[-1] == f"return: {init.task:#x}"
    writes = _written(text)
    assert writes and all(0xFFFF800000000000 <= a < 0xFFFF880000000000 for a in writes), text
    assert "zero pages made up (not in the dump): 1" in text


def test_the_stack_of_a_stopped_kernel_call(target: Target) -> None:
    """-s at a breakpoint in __radix_tree_lookup: $c unwinds (ORC) through the emulated
    memory to find_task_by_pid_ns, the return address after its call, and ends there."""
    import capstone

    fn = target.symbols.lookup("find_task_by_pid_ns")
    assert fn is not None
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    code = target.memory.read(fn.addr, fn.size)
    after_call = [i.address + i.size for i in md.disasm(code, fn.addr) if i.mnemonic == "call"]
    assert len(after_call) == 1
    lines = Lines(target)
    ok, _, err = lines.run("find_task_by_pid_ns::emulate -s -b __radix_tree_lookup 0t96 init_pid_ns")
    assert ok, err
    frames = target_frames(lines)
    assert [f.pc for f in frames] == [_addr(target, "__radix_tree_lookup"), after_call[0]]
    assert frames[-1].note == "end of stack (called by ::emulate)"
    ok, _, err = lines.run("::target dump")
    assert ok, err


def target_frames(lines: Lines) -> list:
    return lines.session.target.stack()
