"""Process address spaces: crash's vm, mdb's ::walk vma and ::pmap.

The fixture's vm output equals crash 8.0.6's (tests/data/crash-golden/
linux-6.1-x86_64-mm.txt, checked by test_crash_commands.py); here the oracle is each lab
guest's own /proc/PID/maps, recorded just before the crash: every process's VMAs (start,
end, permissions, and the file for a file mapping) must be exactly the kernel's, on 5.10
(the mmap/vm_next list), 6.1 (the maple tree) and 6.12 / 7.2 (vm_flags in a union).
"""

from __future__ import annotations

import os
import re

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.target import Target
from tests import kernel_truth as kt
from tests.linux_session import KASLR, run, target_for
from tests.vmlab.truth import MapsLine, load_maps

DUMP = "dump.202611221942"
_ROW = re.compile(r"^([0-9a-f]+) +([0-9a-f]+) +([0-9a-f]+) +([0-9a-f]+) ?(.*)$")


def _vm_rows(out: str) -> list[tuple[int, int, int, int, str]]:
    """(vma, start, end, flags, file) of each VMA row of vm's output."""
    rows = []
    for line in out.splitlines():
        m = _ROW.match(line)
        if m and not line.startswith("PID"):
            rows.append((int(m[1], 16), int(m[2], 16), int(m[3], 16), int(m[4], 16), m[5]))
    return rows


def test_walk_vma_and_pmap_agree_with_vm() -> None:
    t = target_for(KASLR, DUMP)
    vm, err = run(t, "vm 102")
    assert not err
    rows = _vm_rows(vm)
    assert len(rows) == 10 and rows[0][1:3] == (0x400000, 0x401000) and rows[0][4] == "/bin/crashapp"
    walked, _ = run(t, "0t102::walk vma")
    assert [int(w, 16) for w in walked.split()] == [r[0] for r in rows]
    mm = int(vm.splitlines()[2].split()[0], 16)
    by_mm, _ = run(t, f"{mm:x}::walk vma")              # an mm_struct names the same VMAs
    assert by_mm == walked
    pmap, _ = run(t, "0t102::pmap")
    prows = [line.split() for line in pmap.splitlines()[1:]]
    assert [(int(p[0], 16), int(p[1], 16), int(p[2][:-1]) * 1024) for p in prows] == \
        [(r[0], r[1], r[2] - r[1]) for r in rows]
    assert [p[3] for p in prows][:2] == ["r--p", "r-xp"]           # crashapp's ELF header, text
    printed, _ = run(t, "0t102::walk vma | ::print vm_start")
    assert [int(line.split()[-1], 16) for line in printed.splitlines()] == [r[1] for r in rows]


@pytest.mark.parametrize("line", ["vm 99999", "vm x+", "0t2::walk vma", "::pmap 1 2", "tree", "tree -t oak x",
                                  "tree -t maple 0", "tree -o 8 -t maple init_task", "tree -v vmap_area_root",
                                  "tree -t maple -N 0xffff8be102a71778"])
def test_bad_input_is_one_line(line: str) -> None:
    out, err = run(target_for(KASLR, DUMP), line)
    assert err.count("\n") == 1 and "internal error" not in err, (line, err)


def _maps(folder: os.PathLike[str]) -> dict[int, list[MapsLine]]:
    maps = load_maps(folder)
    if maps is None:
        message = (f"{folder} was made before the lab recorded /proc/PID/maps: make it again "
                   "(python3 -m tests.vmlab make RELEASE sysrq --force)")
        if "1" in (os.environ.get("PMDB_REQUIRE_LAB_DUMPS"), os.environ.get("PMDB_REQUIRE_FIXTURES")):
            pytest.fail(message)
        pytest.skip(message)
    return maps


def _open(release: str, name: str) -> tuple[Target, dict[int, list[MapsLine]]]:
    folder = kt.need_lab_dump(release, "sysrq", name)
    return open_target(str(folder / name), config=Config()), _maps(folder)


@pytest.mark.parametrize(("release", "name"), list(kt.KERNELS.items()))
def test_vm_equals_proc_maps(release: str, name: str) -> None:
    """Every process's VMAs as the guest's /proc/PID/maps listed them: ranges, file paths
    and permissions (vm's flags and ::pmap's rwxp); anonymous mappings have no file (maps
    names [heap], [stack], [vdso] from the mm, not from a file)."""
    t, maps = _open(release, name)
    pids = {task.pid for task in t.os.tasks() if task.mm}          # type: ignore[attr-defined]
    checked = 0
    for pid, lines in sorted(maps.items()):
        if pid not in pids or not lines:
            continue
        out, err = run(t, f"vm {pid}")
        assert not err, (pid, err)
        rows = _vm_rows(out)
        assert [(r[1], r[2]) for r in rows] == [(m.start, m.end) for m in lines], (release, pid)
        assert [r[4] for r in rows] == [m.path if m.inode else "" for m in lines], (release, pid)
        pmap, _ = run(t, f"0t{pid}::pmap")
        assert [p.split()[3] for p in pmap.splitlines()[1:]] == [m.perms for m in lines], (release, pid)
        checked += 1
    assert checked >= 6          # init, three sleeps, cat, sh, labapp (and its threads' leader)
