"""::whatis and ::vtop on kernel dumps, against crash and the kernel's own words.

Oracles: crash's ``sym`` (symbol+offset [module]), ``mod`` (module bases and
sizes), ``runq`` (per-CPU runqueue addresses), ``foreach bt`` (stack frame
addresses, each in its task's kernel stack), ``rd -64`` (bytes at a
translated address), ``ps`` (task_structs in the direct map); the oops in
the log (CR3 and the page-table entries the kernel printed for the faulting
address); the SLUB report in the slub fixture's log (an object and the
``struct page`` of its slab); each README (the randomized region bases).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.memory.x86_64 import START_KERNEL_MAP
from pmdb.opener import open_target
from pmdb.os.linux.arch.x86_64.paging import translate, with_root
from pmdb.os.linux.mm.addresses import describe_kernel_address
from pmdb.os.linux.mm.kernel_memory import kernel_parts
from pmdb.session import Session
from pmdb.symbols.kmodules import RegistryOffsets
from pmdb.target import Target
from tests.conftest import FIXTURES, need_fixture
from tests.linux_vmcore import KASLR, NOKASLR, README, crash_section

SLUB = FIXTURES / "linux-6.1-x86_64-slub"
DUMPS = {KASLR: "dump.202611221942", NOKASLR: "dump.202611221946", SLUB: "dump.202611222031"}
_TARGETS: dict[Path, Target] = {}


def target(folder: Path) -> Target:
    if folder not in _TARGETS:
        _TARGETS[folder] = open_target(str(need_fixture(folder / DUMPS[folder])), config=Config())
    return _TARGETS[folder]


def run(t: Target, line: str) -> list[str]:
    out = io.StringIO()
    Session(t, config=Config(), stdout=out, stderr=out).run_line(line)
    return out.getvalue().splitlines()


def whatis(t: Target, addr: int) -> list[str]:
    lines = describe_kernel_address(t, addr)
    assert lines is not None
    return lines


@pytest.fixture(params=[KASLR, NOKASLR], ids=["kaslr", "nokaslr"])
def folder(request: pytest.FixtureRequest) -> Path:
    return request.param


# -- ::whatis ------------------------------------------------------------------------------

def test_symbols_are_crashs_sym(folder: Path) -> None:
    t = target(folder)
    for line in crash_section(folder, "sym "):
        m = re.match(r"([0-9a-f]+) \(\w\) (\w+)\+(\d+) \[(\w+)\]", line)
        assert m, line
        addr, name, off, mod = int(m[1], 16), m[2], int(m[3]), m[4]
        assert whatis(t, addr) == [f"{addr:x} is {name}+{off:#x} [{mod}]"]


def test_module_space_names_crashs_modules(folder: Path) -> None:
    t = target(folder)
    for line in crash_section(folder, "mod")[1:]:
        _, name, base, size = line.split()[:4]
        last = int(base, 16) + int(size) - 1
        for addr in (int(base, 16), last):
            text = whatis(t, addr)[0]
            assert f"[{name}]" in text or f"in module {name} " in text, text
    assert "in no loaded module" in whatis(t, 0xFFFFFFFFF0000000)[0]


def test_every_frame_of_crashs_bt_is_in_its_tasks_stack(folder: Path) -> None:
    """foreach bt: frames after the last IRQ-stack marker lie in the task's own stack."""
    t = target(folder)
    text = "\n".join(crash_section(folder, "foreach bt"))
    checked = 0
    for block in text.split("\nPID: ")[0:]:
        m = re.match(r"(?:PID: )?(\d+)\s+TASK: ([0-9a-f]+)\s+CPU: \d+\s+COMMAND: \"(.*)\"", block)
        assert m, block[:80]
        pid, task, comm = int(m[1]), int(m[2], 16), m[3]
        body = block.split("--- <IRQ stack> ---")[-1]
        for sp in re.findall(r"^\s*#\d+ \[([0-9a-f]+)\]", body, re.M):
            lines = whatis(t, int(sp, 16))
            want = f"in the kernel stack of pid {pid} ({comm}), task {task:x}:"
            assert any(want in line for line in lines), (sp, lines)
            checked += 1
    assert checked > 200


def test_per_cpu_runqueues_are_crashs_runq(folder: Path) -> None:
    t = target(folder)
    rt_active = RegistryOffsets(t.types).offsetof("rq", "rt.active")
    runq = "\n".join(crash_section(folder, "runq"))
    for cpu, rq, prio in re.findall(r"CPU (\d+) RUNQUEUE: (\w+)\n.*\n  RT PRIO_ARRAY: (\w+)", runq):
        assert f"is in cpu {cpu}'s per-CPU area runqueues (offset " in whatis(t, int(rq, 16))[0]
        assert f"per-CPU area runqueues+{rt_active:#x} " in whatis(t, int(prio, 16))[0]
    offset = t.symbols.lookup("runqueues")
    assert offset is not None
    copies = re.findall(r"RUNQUEUE: (\w+)", runq)
    assert whatis(t, offset.addr) == [f"{offset.addr:x} is the per-CPU offset of runqueues: "
                                      + ", ".join(f"cpu {i} at {c}" for i, c in enumerate(copies))]


def test_task_structs_are_direct_mapped(folder: Path) -> None:
    t = target(folder)
    base = README[folder]["page_offset_base"]
    for line in crash_section(folder, "ps")[1:]:
        task = int(line[1:].split()[3], 16)
        lines = whatis(t, task)
        if task >= START_KERNEL_MAP:
            assert lines[0] == f"{task:x} is init_task in the kernel image (data)"
        else:
            assert lines[-1].startswith(f"{task:x} is direct-mapped physical {task - base:#x} ")


def test_slab_object_and_its_struct_page_as_slub_reported() -> None:
    """SLUB's report names the object and its slab's struct page (an order-0 slab here)."""
    t = target(SLUB)
    log = "\n".join(crash_section(SLUB, "log"))
    page = int(re.search(r"\] Slab 0x([0-9a-f]+) objects=", log)[1], 16)   # type: ignore[index]
    obj = int(re.search(r"\] Object 0x([0-9a-f]+) @offset", log)[1], 16)   # type: ignore[index]
    assert whatis(t, obj)[-1].endswith(f"struct page {page:x})")
    pfn = (obj - 0xFFFF88D080000000) >> 12     # README's page_offset_base
    assert whatis(t, page) == [f"{page:x} is struct page for pfn {pfn:#x} (physical {pfn << 12:#x})"]
    assert whatis(t, page + 8)[0].startswith(f"{page + 8:x} is +0x8 into struct page for pfn")


def test_user_addresses_and_targets_that_are_not_kernels() -> None:
    t = target(KASLR)
    assert "user-space address" in whatis(t, 0x4393EB)[0]
    parts = kernel_parts(t)
    assert parts is not None and describe_kernel_address(object(), 0) is None


# -- ::vtop --------------------------------------------------------------------------------

def test_vtop_bytes_are_crashs_rd(folder: Path) -> None:
    """crash's rd -64 at the exception RSP (a vmalloc'd stack) and at a module variable."""
    t = target(folder)
    parts = kernel_parts(t)
    assert parts is not None
    for section in ("rd -64 ffff", "rd -64 crashdrv_head"):
        rows = crash_section(folder, section)
        for row in rows:
            addr, *words = row.split(":")[0:1] + row.split(":")[1].split()[:2]
            tr = translate(parts.space, int(addr, 16))
            assert tr.phys is not None and tr.entries[-1].value & 1
            for i, word in enumerate(w for w in words if re.fullmatch(r"[0-9a-f]{16}", w)):
                assert parts.space.phys.u64(tr.phys + 8 * i) == int(word, 16)


def test_vtop_walks_agree_with_the_fast_paths(folder: Path) -> None:
    t = target(folder)
    parts = kernel_parts(t)
    assert parts is not None
    readme = README[folder]
    init_task = t.symbols.lookup("init_task")
    assert init_task is not None
    image = translate(parts.space, init_task.addr)
    assert image.phys == init_task.addr - START_KERNEL_MAP + readme["phys_base"]
    task = readme["panic_task"]
    assert translate(parts.space, task).phys == task - readme["page_offset_base"]


def test_vtop_of_the_oops_address_shows_the_entries_the_kernel_printed(folder: Path) -> None:
    """The oops printed CR3 and 'PGD .. P4D .. PUD .. PMD 0' for address 0x18: walk from that CR3."""
    t = target(folder)
    log = "\n".join(crash_section(folder, "log"))
    cr3 = int(re.search(r"CR3: ([0-9a-f]+)", log)[1], 16)    # type: ignore[index]
    m = re.search(r"\] PGD (\w+) P4D \w+ PUD (\w+) PMD (\w+)", log)
    assert m
    parts = kernel_parts(t)
    assert parts is not None
    tr = translate(with_root(parts.space, cr3), 0x18)
    assert tr.phys is None and [e.value for e in tr.entries] == [int(m[1], 16), int(m[2], 16), int(m[3], 16)]
    lines = run(t, f"::vtop -r {cr3:x} 18")
    assert lines[1].split() == ["18", "(not", "mapped)"]
    assert [line.split()[0] for line in lines[4:7]] == ["PGD:", "PUD:", "PMD:"]
    assert lines[6].split()[3] == m[3] and lines[-1].strip().startswith("no PMD entry for 0x18")
    by_task = run(t, f"::vtop -c {README[folder]['panic_task']:x} 18")
    assert by_task == lines


def test_vtop_dcmd_output() -> None:
    t = target(KASLR)
    lines = run(t, "init_task::vtop")
    init_task = t.symbols.lookup("init_task")
    assert init_task is not None
    phys = init_task.addr - START_KERNEL_MAP + README[KASLR]["phys_base"]
    assert lines[1].split() == [f"{init_task.addr:x}", f"{phys:x}"]
    assert lines[-2].strip() == f"PAGE: {phys & ~0x1FFFFF:x}  (2 MB)"   # the image is mapped with 2 MB pages
    assert run(t, "::vtop ffff800000000000")[-1].strip() == "no PGD entry for 0xffff800000000000"
    assert "needs an address" in run(t, "::vtop")[0]
    crash = run(t, f"vtop {init_task.addr:x}")          # crash's spelling: crash's layout
    assert crash[1].split() == lines[1].split() and crash[3] == "PGD DIRECTORY: " + \
        f"{t.symbols.lookup('init_top_pgt').addr:x}" and crash[7].strip() == f"PAGE: {phys & ~0x1FFFFF:x}  (2MB)"


def test_whatis_dcmd_joins_the_slab_object_and_the_region():
    """::whatis of a task_struct (crash's ps gives the panic task's address) names its slab
    object first, then the direct-map region; a stack address names the task's stack."""
    t = target(FIXTURES / "linux-6.1-x86_64")
    out, err = io.StringIO(), io.StringIO()
    s = Session(t, stdout=out, stderr=err)
    assert s.run_line("ffff8be102a71850::whatis")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("ffff8be102a71850 is ffff8be102a71840+0x10, an allocated task_struct object")
    assert lines[1:] == describe_kernel_address(t, 0xffff8be102a71850)
    out.truncate(0), out.seek(0)
    assert s.run_line("ffffd303c0403ea8::whatis")
    assert "kernel stack of pid 102 (crashapp)" in out.getvalue().splitlines()[0]
    assert err.getvalue() == ""
