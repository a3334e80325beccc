"""pmdb on the kernel lab's arm64 dumps against the guest's own /proc and console (kernel_truth).

The lab boots Debian arm64 kernels under qemu-system-aarch64 and dumps them
(QEMU's ELF and kdump-zlib dumps: nothing but the dump, no vmlinux). Every answer is compared
with what the guest recorded: ::ps with /proc/PID/stat, sleeping tasks'
stacks with /proc/PID/stack, ::msgbuf with the console, ::kmastat with
slabinfo, the panic task's ``$c`` with the console's ``Call trace:``, ::vtop
of a symbol with the guest's kallsyms address and the image rule, ::whatis.
Skipped with the reason when the lab has not made a dump (kernel_truth's
need_lab_dump; a failure instead under PMDB_REQUIRE_LAB_DUMPS=1).
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import datetime
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.target import Target
from tests import kernel_truth as kt
from tests.linux_session import run


def _pinned_arm64() -> set[str]:
    with open(Path(__file__).parent / "vmlab" / "kernels.toml", "rb") as f:
        return {k["release"] for k in tomllib.load(f)["kernels"].values() if k["release"].endswith("-arm64")}


# the Debian arm64 lines the lab pins (CI makes their sysrq and null dumps), and any other
# arm64 release it has dumped
RELEASES = sorted(_pinned_arm64() | {p.name for p in (kt.LAB_CACHE / "dumps").glob("*-arm64")})
# QEMU writes both: its ELF dump, and a kdump-compressed one whose header says "Unknown" machine
FORMATS = ("vmcore.elf", "vmcore.kdump-zlib")
CASES = [(release, scenario, fmt) for release in RELEASES for scenario in ("sysrq", "null") for fmt in FORMATS]
_OPEN: dict[Path, Target] = {}
_ARM64_TRACE = re.compile(r"^\s*([^\s+<>]+)\+(0x[0-9a-f]+)/0x[0-9a-f]+")
_C_FRAME = re.compile(r"^([^\s+(]+)(?:\+(0x[0-9a-f]+))?\(")


def _ids(cases: list[tuple[str, str, str]]) -> list[str]:
    return [f"{r}/{s}/{f.split('.')[1]}" for r, s, f in cases]


def _open(case: tuple[str, str, str]) -> tuple[Path, Target]:
    release, scenario, fmt = case
    folder = kt.need_lab_dump(release, scenario, name=fmt)
    path = folder / fmt
    if path not in _OPEN:
        _OPEN[path] = open_target(str(path), config=Config())
    return folder, _OPEN[path]


@pytest.fixture(params=CASES, ids=_ids(CASES))
def lab(request: pytest.FixtureRequest) -> tuple[Path, Target]:
    return _open(request.param)


OOPS_CASES = [c for c in CASES if c[1] == "null"]


@pytest.fixture(params=OOPS_CASES, ids=_ids(OOPS_CASES))
def oops(request: pytest.FixtureRequest) -> tuple[Path, Target]:
    """The dumps whose panic is an oops (the module's NULL store)."""
    return _open(request.param)


def _agrees(agreement: kt.Agreement) -> None:
    assert agreement.matched, "nothing to compare"
    assert not agreement.differences, "\n".join(agreement.differences)


def test_opens_as_an_arm64_kernel(lab: tuple[Path, Target]) -> None:
    folder, target = lab
    assert target.arch.name == "aarch64" and target.kind == "vmcore"
    fields = dict(line.strip().split(": ", 1) for line in run(target, "::status")[0].splitlines()
                  if ": " in line)
    assert fields["RELEASE"] == (folder / "truth" / "uname").read_text().split()[2]
    # the clocks (recovered symbols): the crash's wall time is when the lab made the dump
    made = datetime.strptime(json.loads((folder / "meta.json").read_text())["made"], "%Y-%m-%d %H:%M:%S")
    date = datetime.strptime(fields["DATE"], "%a %b %d %H:%M:%S UTC %Y")
    assert abs((date - made).total_seconds()) < 120, (fields["DATE"], made)
    assert re.fullmatch(r"00:00:\d\d|00:0\d:\d\d", fields["UPTIME"]), fields["UPTIME"]
    assert re.fullmatch(r"\d+\.\d\d, \d+\.\d\d, \d+\.\d\d", fields["LOAD AVERAGE"])


def test_kallsyms_addresses_are_the_guests(lab: tuple[Path, Target]) -> None:
    folder, target = lab
    want = {}
    for line in (folder / "truth" / "kallsyms").read_text().splitlines():
        addr, _, name = line.split()
        want[name] = int(addr, 16)
    got = {name: sym.addr for name in want if (sym := target.symbols.lookup(name)) is not None}
    assert got == want


def test_ps_is_proc_stat(lab: tuple[Path, Target]) -> None:
    folder, target = lab
    _agrees(kt.compare_ps(target, folder / "truth"))


def test_sleeping_stacks_are_proc_stack(lab: tuple[Path, Target]) -> None:
    folder, target = lab
    _agrees(kt.compare_stacks(target, folder / "truth"))


def test_msgbuf_holds_the_console(lab: tuple[Path, Target]) -> None:
    folder, target = lab
    _agrees(kt.compare_msgbuf(target, folder))


def test_kmastat_is_slabinfo(lab: tuple[Path, Target]) -> None:
    folder, target = lab
    _agrees(kt.compare_kmastat(target, folder / "truth"))


def test_modules_are_proc_modules(lab: tuple[Path, Target]) -> None:
    """The module list (found through the recovered ``modules`` head) and load addresses."""
    folder, target = lab
    _agrees(kt.compare_modules(target, folder / "truth"))


def console_call_trace(dump_dir: Path) -> list[tuple[str, int]]:
    """(function, offset) of the console's last arm64 ``Call trace:``, from ``panic`` on."""
    trace: list[tuple[str, int]] = []
    in_trace = False
    for line in kt.console_messages(dump_dir):
        if line.startswith("Call trace:"):
            trace, in_trace = [], True
            continue
        m = _ARM64_TRACE.match(line)
        if in_trace and m is not None:
            trace.append((m.group(1), int(m.group(2), 16)))
        elif in_trace:
            in_trace = False
    names = [name for name, _ in trace]
    return trace[names.index("panic"):] if "panic" in names else trace


def test_panic_stack_is_the_consoles(lab: tuple[Path, Target]) -> None:
    """The console's trace in ``$c``, by return address (the console names a return address
    past a noreturn call by the function after it; ``panic`` by its function alone)."""
    folder, target = lab
    want = console_call_trace(folder)
    assert want, "no Call trace on the console"
    have = [(m.group(1), int(m.group(2) or "0", 16)) for line in run(target, "$c")[0].splitlines()
            if (m := _C_FRAME.match(line))]
    want_pcs, have_pcs = [kt._pc(target, f) for f in want], [kt._pc(target, f) for f in have]
    assert kt.is_subsequence(want_pcs, have_pcs), f"console {want}\n$c {have}"
    names = [name for name, _ in have]
    if folder.name == "sysrq":
        assert "sysrq_handle_crash" in names
    else:       # the oops: the faulting function right after the EL1 exception entry
        assert names[names.index("el1h_64_sync") + 1] == want[0][0]


def test_vtop_of_a_symbol_walks_four_levels(lab: tuple[Path, Target]) -> None:
    _, target = lab
    addr = target.symbols.lookup("init_task").addr
    out, err = run(target, f"{addr:x}::vtop")
    assert not err
    levels = [word for word in ("PGD", "PUD", "PMD", "PTE") if re.search(rf"\b{word}\b", out)]
    assert levels[:2] == ["PGD", "PUD"], out
    assert "VALID" in out and "AF" in out
    space = target.memory
    phys, _ = space.vtop(addr)                          # the walk agrees with the image rule
    assert phys == (addr - space.kimage_voffset) & ((1 << 64) - 1)
    assert space.read(addr, 64) == space.phys.read(phys, 64)


def test_whatis_names_regions(lab: tuple[Path, Target]) -> None:
    _, target = lab
    addr = target.symbols.lookup("init_task").addr
    assert "init_task" in run(target, f"{addr:x}::whatis")[0]
    linear = target.memory.page_offset + 0x1000
    phys = linear - target.memory.page_offset + target.memory.phys_offset
    assert f"is direct-mapped physical {phys:#x}" in run(target, f"{linear:x}::whatis")[0]


def test_emulated_find_task_by_pid_ns_finds_every_task(lab: tuple[Path, Target]) -> None:
    """The kernel's own idr walk, run on unicorn's AArch64 CPU over the dump, returns the
    task_struct ::ps lists for every pid the guest's /proc listed."""
    from tests.test_emulate_kernel import Lines

    folder, target = lab
    rows = kt._ps_rows(target)
    pids = sorted(pid for pid in kt.truth_tasks(folder / "truth") if pid in rows and pid != 0)
    assert len(pids) >= 10
    lines = Lines(target)
    found = {pid: lines.value(f"find_task_by_pid_ns::emulate 0t{pid} init_pid_ns") for pid in pids}
    assert found == {pid: rows[pid].task for pid in pids}


def test_emulated_flow_trace_and_cpu_target(lab: tuple[Path, Target]) -> None:
    """-F shows the nested calls (bl) and returns (ret) with their values; -t one line per
    instruction; stopped at a breakpoint the emulated CPU is the target and its ``$c``
    unwinds the emulated stack by frame records back to the emulated function."""
    from tests.test_emulate_kernel import Lines

    folder, target = lab
    init = kt._ps_rows(target)[1].task
    ok, flow, err = Lines(target).run("find_task_by_pid_ns::emulate -F 1 init_pid_ns")
    assert ok, err
    lines = [line for line in flow.splitlines() if "->" in line or "<-" in line]
    assert lines[0] == "-> find_task_by_pid_ns(...)" and lines[1] == "  -> idr_find(...)", flow
    assert lines[-1] == f"<- find_task_by_pid_ns = {init:#x}", flow
    ok, trace, err = Lines(target).run("find_task_by_pid_ns::emulate -t 1 init_pid_ns")
    assert ok, err
    assert sum(1 for line in trace.splitlines() if "idr_find" in line) > 3
    lines_cpu = Lines(target)
    ok, _, err = lines_cpu.run("find_task_by_pid_ns::emulate -b __radix_tree_lookup -s 1 init_pid_ns")
    assert ok, err
    assert lines_cpu.session.target.kind == "emulated"
    ok, stack, err = lines_cpu.run("$c")
    assert ok, err
    names = [m.group(1) for line in stack.splitlines() if (m := _C_FRAME.match(line))]
    assert names == ["__radix_tree_lookup", "radix_tree_lookup", "idr_find", "find_task_by_pid_ns"], stack


def test_vtop_of_a_user_address_through_the_tasks_tables(lab: tuple[Path, Target]) -> None:
    """The panic task entered the kernel by a system call: the EL0 pt_regs' pc follows its
    ``svc #0``, which the task's own tables (-c) must map to a physical word 0xd4000001. (A 52-bit kernel's
    top table has 16 entries: mm->pgd is a 128-byte object, not a page.)"""
    _, target = lab
    thread = target.current_thread
    assert thread is not None and thread.address is not None
    user = target.stack(thread)[-1]
    assert user.stack_name == "user" and user.exception is not None
    pc = user.exception["pc"]
    out, err = run(target, f"::vtop -c {thread.address:#x} {pc - 4:x}")
    assert not err, err
    phys = int(out.splitlines()[1].split()[1], 16)
    assert "AP=RO/EL0" in out or "AP=RW/EL0" in out, out
    assert int.from_bytes(target.memory.phys.read(phys, 4), "little") == 0xD4000001


_CONSOLE_REG = re.compile(r"\b(x\d+|sp)\s*: ([0-9a-f]{16})\b")


def test_bt_exception_registers_are_the_oops(oops: tuple[Path, Target]) -> None:
    """After the NULL store, crash-style ``bt`` prints the pt_regs of the EL1 abort: every
    register the oops printed on the console (__show_regs' x0..x29, sp) with its value."""
    folder, target = oops
    want: dict[str, int] = {}
    for line in kt.console_messages(folder):         # the oops' own dump: the first one
        want.update((name, int(value, 16)) for name, value in _CONSOLE_REG.findall(line))
        if "x0" in want:
            break
    assert len(want) >= 30, want
    text = run(target, "bt")[0]
    block = text[text.index("[exception RIP: pmdblab_record_hit"):].split("\n#", 1)[0]
    have = {name.lower(): int(value, 16) for name, value in re.findall(r"\b(X\d+|SP): ([0-9a-f]{16})", block)}
    assert {name: have.get(name) for name in want} == want
