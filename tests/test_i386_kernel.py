"""pmdb on the kernel lab's 32-bit dumps against the guest's own /proc and console: Debian's
686-pae kernels (PAE) and its 686 kernel (two-level paging).

Debian's 686 and 686-pae kernels have neither BTF nor CONFIG_KALLSYMS_ALL, so with nothing but the
dump pmdb has VMCOREINFO, kallsyms' text symbols and the page tables: these tests check
what that gives (::status, ::msgbuf, the CPUs' stacks by frame pointer, ::vtop, ::whatis)
against the guest, and that what it cannot give (the task list) is refused in one line.
With the kernel's debug vmlinux (its -dbg package: DWARF types and data symbols) the rest
is there too: ::ps, every sleeping task's stack, ::kmastat, the modules and the panic
stack through the module agree with the guest. Both QEMU dump formats the lab makes are
read. Skipped when the lab has not made the dumps or fetched the vmlinux
(kernel_truth.need_lab_dump, need_dbg_vmlinux: a failure in CI).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.os.linux.arch.i386 import paging
from pmdb.os.linux.arch.i386.layout import I386Layout
from pmdb.os.linux.mm.kernel_memory import kernel_parts
from pmdb.target import Target
from tests import kernel_truth as kt
from tests.linux_session import run

PAGE_OFFSET = 0xC0000000
# QEMU's two dumps; no makedumpfile dump: Debian's i386 makedumpfile (under qemu-i386)
# crashes on QEMU's i386 dumps, so the lab records mdf as unsupported there. The kdump set
# is the guest's own: /proc/vmcore as ELF32 and its makedumpfile's 32-bit kdump (mdf).
FORMATS = ("vmcore.elf", "vmcore.kdump-zlib")
KDUMP_FORMATS = ("vmcore.elf", "vmcore.mdf")


def _files(scenario: str) -> tuple[str, ...]:
    return KDUMP_FORMATS if scenario == "kdump" else FORMATS


def _cases() -> list[tuple[str, str]]:
    """The lab's pinned i386 kernels (CI makes their sysrq and null dumps), and any 686 or
    686-pae dump already in the cache."""
    with open(Path(__file__).parent / "vmlab" / "kernels.toml", "rb") as f:
        pinned = [k["release"] for k in tomllib.load(f)["kernels"].values() if k.get("arch") == "i386"]
    made = [(p.parent.name, p.name) for p in (kt.LAB_CACHE / "dumps").glob("*-686*/*")
            if p.is_dir() and not p.name.startswith(".")]       # .tmp-*: a dump being made
    kdump = [r for r in pinned if r.startswith("6.1.") and r.endswith("-pae")]   # CI makes this one
    return sorted({(r, s) for r in pinned for s in ("sysrq", "null")} | {(r, "kdump") for r in kdump}
                  | set(made))


CASES = [pytest.param((r, s, f), id=f"{r}/{s}/{f}") for r, s in _cases() for f in _files(s)] or [
    pytest.param(("", "", ""), id="no-686-pae-dump", marks=pytest.mark.skip(
        reason="no 686-pae kernel pinned in tests/vmlab/kernels.toml and none in the lab cache"))]
_OPEN: dict[Path, Target] = {}
_OPEN_DWARF: dict[Path, Target] = {}
# the tests without a vmlinux must not find one in /usr/lib/debug either
_DUMP_ALONE = {"debuginfo.directories": []}


@pytest.fixture(params=CASES)
def lab(request: pytest.FixtureRequest) -> tuple[Path, Target]:
    """(the dump's folder, the dump opened once per run). The ELF dump is required; the
    other formats are read where the lab made them (CI makes elf and mdf)."""
    return _opened(request.param, _OPEN, with_vmlinux=False)


def _opened(case: tuple[str, str, str], opened: dict[Path, Target], with_vmlinux: bool) -> tuple[Path, Target]:
    """(the case's folder, its dump opened once per run: from the dump alone, or with the
    kernel's debug vmlinux named)."""
    release, scenario, name = case
    folder = kt.need_lab_dump(release, scenario, name="vmcore.elf")
    path = folder / name
    if not path.exists():
        pytest.skip(f"the lab made no {name} of {release}/{scenario}")
    if path not in opened:
        files = [str(kt.need_dbg_vmlinux(release))] if with_vmlinux else []
        opened[path] = open_target(str(path), config=Config(_DUMP_ALONE), symbol_files=files)
    return folder, opened[path]


# the scenarios CI makes; others the lab may hold differ from /proc for their own reasons
# (hungtask: rcu_preempt moved on after the record; stackoverflow: an i386 stack has no
# guard page, and its overflow corrupted the slab objects below it)
DWARF_CASES = [c for c in CASES if c.values[0][1] in ("sysrq", "null") and c.values[0][0].endswith("-pae")] or CASES


@pytest.fixture(params=DWARF_CASES)
def lab_dwarf(request: pytest.FixtureRequest) -> tuple[Path, Target]:
    """(the dump's folder, the dump opened with its kernel's debug vmlinux named)."""
    return _opened(request.param, _OPEN_DWARF, with_vmlinux=True)


def _status(target: Target) -> dict[str, str]:
    return dict(line.strip().split(": ", 1) for line in run(target, "::status")[0].splitlines() if ": " in line)


def test_status_names_the_guests_kernel(lab: tuple[Path, Target]) -> None:
    folder, target = lab
    assert target.arch.name == "i386"
    fields = _status(target)
    uname = (folder / "truth" / "uname").read_text().split()
    assert fields["RELEASE"] == uname[2]
    assert fields["NODENAME"] == uname[1]
    assert fields["VERSION"].startswith(" ".join(uname[3:6]))
    assert fields["MACHINE"] == uname[-2]
    panic = fields["PANIC"].strip('"')
    assert panic and any(panic in line for line in kt.console_messages(folder))


def test_kallsyms_addresses_are_the_guests(lab: tuple[Path, Target]) -> None:
    """Every symbol the guest listed that kallsyms holds has the guest's address."""
    folder, target = lab
    want = {f[2]: int(f[0], 16) for line in (folder / "truth" / "kallsyms").read_text().splitlines()
            if len(f := line.split()) >= 3}
    got = {name: sym.addr for name in want if (sym := target.symbols.lookup(name)) is not None}
    assert "_stext" in got
    assert got == {name: want[name] for name in got}


def test_msgbuf_holds_the_console(lab: tuple[Path, Target]) -> None:
    agreement = kt.compare_msgbuf(target=lab[1], dump_dir=lab[0])
    assert agreement.matched, "nothing to compare"
    assert not agreement.differences, "\n".join(agreement.differences)


def _c_frames(target: Target) -> list[tuple[str, int]]:
    lines = run(target, "$c")[0].splitlines()
    return [(m.group(1), int(m.group(2) or "0", 16)) for line in lines
            if (m := re.match(r"^([^\s+(]+)(?:\+(0x[0-9a-f]+))?\(", line))]


def test_panic_cpu_stack_is_the_consoles_call_trace(lab: tuple[Path, Target]) -> None:
    """The panicking CPU's $c (the default thread) holds the console's reliable frames from
    panic on, in order, by return address; module frames are left out (no types: no module
    list, so they have no names)."""
    folder, target = lab
    trace, _ = kt.console_panic_trace(folder)
    trace = [f for f in trace if target.symbols.lookup(f[0]) is not None]
    have = _c_frames(target)
    names = [name for name, _ in have]
    assert "panic" in names
    if not trace:
        # the kernel printed no trace (a double fault's task switch): the walk goes on past
        # the exception into the faulting context, whose code the console printed
        code = _console_code(folder)
        assert code, "the console has neither a Call Trace nor a Code: line"
        frames = target.stack()
        assert any(f.exception is not None and target.memory.readable(f.pc, len(code))
                   and target.memory.read(f.pc, len(code)) == code for f in frames), \
            f"no exception frame's eip holds the oops' code {code.hex()}"
    scenario = json.loads((folder / "meta.json").read_text())["scenario"]
    if scenario == "sysrq":
        assert "sysrq_handle_crash" in names
    if scenario == "null":      # through the page fault's pt_regs into the module, then out
        assert kt.is_subsequence(["exc_page_fault", "handle_exception", "entry_SYSENTER_32"], names)

    def pc(frame: tuple[str, int]) -> int:
        sym = target.symbols.lookup(frame[0])
        assert sym is not None
        return sym.addr if frame[0] == "panic" else sym.addr + frame[1]
    pcs = [pc(f) for f in have if target.symbols.lookup(f[0]) is not None]
    assert kt.is_subsequence([pc(f) for f in trace], pcs), f"console {trace}\n$c {have}"


def _console_code(folder: Path) -> bytes:
    """The bytes from the faulting instruction on, from the oops' ``Code:`` line (the
    instruction at EIP is the one in angle brackets)."""
    for line in kt.console_messages(folder):
        if line.startswith("Code: ") and "<" in line:
            after = line.split("<", 1)[1].replace(">", "")
            return bytes.fromhex("".join(after.split()))
    return b""


def test_a_thread_for_each_cpu(lab: tuple[Path, Target]) -> None:
    folder, target = lab
    smp = json.loads((folder / "meta.json").read_text()).get("smp", 1)
    assert [t.name for t in target.threads()] == [f"cpu{i}" for i in range(smp)]


def test_vtop_of_a_kernel_symbol_walks_pae(lab: tuple[Path, Target]) -> None:
    _, target = lab
    sym = target.symbols.lookup("sysrq_handle_crash")
    assert sym is not None
    out = run(target, f"{sym.addr:x}::vtop")[0]
    assert re.search(rf"^{sym.addr:x}\s+{sym.addr - PAGE_OFFSET:x}$", out, re.M), out
    if _pae(target):
        assert re.search(r"PDPT: \w+ => \w+\s+\(PRESENT", out) and re.search(r"PMD: \w+ => \w+\s+\(PRESENT", out)
    else:       # the 686 flavour: two levels, lowmem by 4M pages
        assert re.search(r"PGD: \w+ => \w+\s+\(PRESENT.*PSE", out) and "PDPT" not in out, out
    assert "sysrq_handle_crash in the kernel image" in run(target, f"{sym.addr:x}::whatis")[0]


def _pae(target: Target) -> bool:
    """Whether the kernel pages with PAE (686-pae) or two levels (686), as its release says."""
    return _status(target)["RELEASE"].endswith("-pae")


def _vmalloc_addresses(target: Target) -> list[int]:
    """va_start of the busy vmap areas (vmap_area_list, offsets from VMCOREINFO)."""
    km = kernel_parts(target)
    assert km is not None
    head = km.info.symbol("vmap_area_list")
    list_off, start_off = km.info.offset("vmap_area", "list"), km.info.offset("vmap_area", "va_start")
    out: list[int] = []
    node = target.memory.ptr(head)
    while node != head and len(out) < 64:
        out.append(target.memory.ptr(node - list_off + start_off))
        node = target.memory.ptr(node)
    return out


def test_vtop_of_a_vmalloc_address_walks_to_a_4k_page(lab: tuple[Path, Target]) -> None:
    """A vmalloc address is above lowmem, reached only by the tables: ::vtop shows three
    levels, and memory read through it is the physical page the walk found."""
    _, target = lab
    km = kernel_parts(target)
    assert km is not None and isinstance(km.layout, I386Layout)
    phys = paging.paged(km.space).phys
    for addr in _vmalloc_addresses(target):
        walk = km.vtop(addr)
        if walk.phys is not None and walk.page_size == 4096 and phys.readable(walk.phys, 64):
            break
    else:
        pytest.fail("no vmap area is mapped by 4K pages")
    assert addr >= km.layout.high_memory and km.fast_path(addr) is None
    assert [e.level for e in walk.entries] == (["PDPT", "PMD", "PTE"] if _pae(target) else ["PGD", "PTE"])
    assert target.memory.read(addr, 64) == phys.read(walk.phys, 64)
    out = run(target, f"{addr:x}::vtop")[0]
    assert re.search(rf"^{addr:x}\s+{walk.phys:x}$", out, re.M) and "PTE:" in out
    assert "in vmalloc space" in run(target, f"{addr:x}::whatis")[0]


def test_the_task_list_is_refused_in_one_line(lab: tuple[Path, Target]) -> None:
    """No BTF and no data symbols: ::ps cannot know tasks, and says so without a traceback."""
    _, target = lab
    out, err = run(target, "::ps")
    assert "init_task" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_guests_own_kdump_is_elf32_and_a_32bit_kdump() -> None:
    """The kdump set is what production makes: /proc/vmcore saved by the capture kernel as
    ELF32 (kexec --elf32-core-headers) and the guest's own i386 makedumpfile's kdump file,
    whose header has 32-bit longs (block_size at 416, not 428). Both open, and agree with
    each other on the panic stack and on kernel text."""
    folder = kt.need_lab_dump("6.1.0-57-686-pae", "kdump", name="vmcore.elf")
    head = (folder / "vmcore.elf").read_bytes()[:64]
    assert head[4] == 1 and int.from_bytes(head[18:20], "little") == 3      # ELFCLASS32, EM_386
    header = (folder / "vmcore.mdf").read_bytes()[:512]
    assert header.startswith(b"KDUMP   ")
    assert int.from_bytes(header[416:420], "little") == 4096                  # 32-bit layout
    elf, mdf = (open_target(str(folder / n), config=Config()) for n in KDUMP_FORMATS)
    sym = elf.symbols.lookup("sysrq_handle_crash")
    assert sym is not None
    assert elf.memory.read(sym.addr, 64) == mdf.memory.read(sym.addr, 64)
    assert _c_frames(elf) == _c_frames(mdf)
    assert "sysrq_handle_crash" in [name for name, _ in _c_frames(elf)]


# -- with the debug vmlinux -----------------------------------------------------------------

def test_dwarf_opens_without_warnings(lab_dwarf: tuple[Path, Target]) -> None:
    _, target = lab_dwarf
    assert not target.warnings
    assert "vmlinux-" in _status(target)["KERNEL"]


# what the types bring, each against the guest's record (the panic stack whole: the module's
# Elf32_Sym symbols are read through struct module's DWARF layout, so pmdblab_ioctl is named)
DWARF_COMPARISONS = {
    "ps-is-proc-stat": lambda target, folder: kt.compare_ps(target, folder / "truth"),
    "every-sleeping-stack-is-proc-stack": lambda target, folder: kt.compare_stacks(target, folder / "truth"),
    "kmastat-is-slabinfo": lambda target, folder: kt.compare_kmastat(target, folder / "truth"),
    "modules-are-proc-modules": lambda target, folder: kt.compare_modules(target, folder / "truth"),
    "panic-stack-is-the-consoles": kt.compare_panic_stack,
}


@pytest.mark.parametrize("what", list(DWARF_COMPARISONS))
def test_dwarf_agrees_with_the_guest(lab_dwarf: tuple[Path, Target], what: str) -> None:
    folder, target = lab_dwarf
    agreement = DWARF_COMPARISONS[what](target, folder)
    assert agreement.matched, "nothing to compare"
    assert not agreement.differences, "\n".join(agreement.differences)


def test_dwarf_ptree_and_task_stacks(lab_dwarf: tuple[Path, Target]) -> None:
    """::ptree descends from init (pid 1) and kthreadd (pid 2); ::stacks groups every task."""
    _, target = lab_dwarf
    out, err = run(target, "::ptree")
    assert err == ""
    names = out.split()
    assert any(w.endswith("init") for w in names) and any("kthreadd" in w for w in names)
    out, err = run(target, "::stacks")
    assert err == "" and "schedule" in out
