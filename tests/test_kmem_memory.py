"""crash's kmem -i / -V / -v / -p and mdb's ::memstat, ::whatthread and ::print -d.

The 6.1 fixture's outputs equal crash 8.0.6's (kmem -i in the fixture's crash-oracle.txt,
the rest in tests/data/crash-golden/linux-6.1-x86_64-mm.txt). On the lab's dumps the
oracle is the guest's own /proc, recorded a moment before the crash: meminfo's totals
that cannot change (MemTotal, CommitLimit) must be equal, the ones that move a little
(free, slab, cached) close; vmstat names every counter kmem -V shows; vmallocinfo lists
the same areas as kmem -v.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from tests import kernel_truth as kt
from tests.linux_session import KASLR, run, target_for
from tests.linux_vmcore import crash_sections
from tests.vmlab.truth import load_truth

DUMP = "dump.202611221942"


def test_kmem_i_equals_crash() -> None:
    out, err = run(target_for(KASLR, DUMP), "kmem -i")
    assert not err
    assert out.splitlines() == next(lines for lines in crash_sections(KASLR, "kmem -i") if lines)


def _kmem_i(out: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^ *([A-Z][A-Z ]+?) +(\d+) ", out, re.M)}


def test_memstat_adds_up_to_kmem_i() -> None:
    """::memstat's rows cover the RAM exactly: they sum to Total, which is kmem -i's TOTAL
    MEM, and Free and Slab are kmem -i's FREE and SLAB."""
    t = target_for(KASLR, DUMP)
    info = _kmem_i(run(t, "kmem -i")[0])
    out, err = run(t, "::memstat")
    assert not err
    rows = {line.rsplit(None, 3)[0]: int(line.rsplit(None, 3)[1]) for line in out.splitlines()[1:-1]}
    total = int(out.splitlines()[-1].split()[1])
    assert total == info["TOTAL MEM"] and sum(rows.values()) == total
    assert (rows["Free"], rows["Slab"], rows["Page cache"]) == (info["FREE"], info["SLAB"], info["CACHED"])


def test_whatthread_finds_the_return_address_on_the_crashing_stack() -> None:
    """crash's rd -64 ffffd303c0403ea8 (crash-oracle.txt) shows crashdrv_null_pointer+36 on
    crashapp's stack: ::whatthread finds that word, and only there."""
    t = target_for(KASLR, DUMP)
    out, err = run(t, "crashdrv_null_pointer+0t36::whatthread -v")
    assert not err
    assert [line.split() for line in out.splitlines()[1:]] == [
        ["ffff8be102a71840", "102", "crashapp", "ffffd303c0403ea8"]]
    piped, _ = run(t, "crashdrv_null_pointer+0t36::whatthread | ::print task_struct pid")
    assert piped.split() == ["pid", "=", "0x66"]
    nothing, err = run(t, "0x1234567812345678::whatthread")
    assert nothing == "" and not err


def test_print_decimal_and_flexible_arrays() -> None:
    """thread_pid->numbers[] is struct upid numbers[] (a flexible array): element 0 is the
    task's pid in the init namespace."""
    t = target_for(KASLR, DUMP)
    out, err = run(t, "ffff8be102a71840::print task_struct thread_pid->numbers[0].nr pid")
    assert not err and out.splitlines() == ["thread_pid->numbers[0].nr = 0x66", "pid = 0x66"]
    out, _ = run(t, "ffff8be102a71840::print -d task_struct pid prio comm[0]")
    assert out.splitlines() == ["pid = 0t102", "prio = 0t120", "comm[0] = 'c'"]
    _, err = run(t, "ffff8be102a71840::print task_struct comm[0t16]")      # a sized array is still bounded
    assert "out of range" in err and err.count("\n") == 1


@pytest.mark.parametrize("line", ["kmem -i 1", "kmem -i -s", "kmem -V -v", "kmem -v 1", "kmem -p ffffffffffffff00",
                                  "kmem -p nosuchsymbol", "::memstat 1", "kmem -v nosuch"])
def test_bad_input_is_one_line(line: str) -> None:
    out, err = run(target_for(KASLR, DUMP), line)
    assert err.count("\n") == 1 and "internal error" not in err, (line, err)


def _close(a: int, b: int, within: float) -> bool:
    return abs(a - b) <= within * max(a, b)


@pytest.mark.parametrize(("release", "name"), list(kt.KERNELS.items()))
def test_kmem_i_against_proc_meminfo(release: str, name: str) -> None:
    folder = kt.need_lab_dump(release, "sysrq", name)
    meminfo = load_truth(folder).meminfo
    t = open_target(str(folder / name), config=Config())
    out, err = run(t, "kmem -i")
    assert not err, err
    kb = {k: v * 4 for k, v in _kmem_i(out).items()}
    assert kb["TOTAL MEM"] == meminfo["MemTotal"] and kb["COMMIT LIMIT"] == meminfo["CommitLimit"]
    assert kb["BUFFERS"] == meminfo["Buffers"] and kb["TOTAL SWAP"] == meminfo["SwapTotal"]
    assert _close(kb["FREE"], meminfo["MemFree"], 0.05)
    assert _close(kb["SLAB"], meminfo["SReclaimable"] + meminfo["SUnreclaim"], 0.1)
    assert _close(kb["CACHED"], meminfo["Cached"], 0.1)
    assert 0 < kb["SHARED"] < kb["USED"]
    vmstat = dict(line.split() for line in (folder / "truth" / "vmstat").read_text().splitlines())
    counters, _ = run(t, "kmem -V")
    names = [line.split(":")[0].strip().lower() for line in counters.splitlines() if line.strip()
             and not line.strip().endswith(":")]
    assert len(names) > 100
    # /proc/vmstat names each counter as the kernel's vmstat_text does: most enum names
    # lowercased (not all: "nr_slab_reclaimable_b" is "nr_slab_reclaimable", "pgscan_skip_dma"
    # "pgskip_dma")
    assert len([n for n in names if n in vmstat]) > 0.7 * len(names)
    assert {"nr_free_pages", "nr_zone_active_anon", "nr_file_pages", "pgfault", "pgfree"} <= set(names) & set(vmstat)
    assert _close(int(dict(zip(names, (int(line.split(":")[1]) for line in counters.splitlines()
                                        if line.strip() and not line.strip().endswith(":")), strict=True))
                      ["nr_free_pages"]), int(vmstat["nr_free_pages"]), 0.05)


@pytest.mark.parametrize(("release", "name"), list(kt.KERNELS.items()))
def test_kmem_v_against_proc_vmallocinfo(release: str, name: str) -> None:
    """/proc/vmallocinfo (addresses hidden from the record: kptr_restrict) lists each
    vm_struct's size: kmem -v's sizes are the same, but for an area or two made or freed
    between the record and the crash. Up to 6.8 both are in address order; 6.9+ lists
    them node by node, where kmem -v sorts them by address as crash does (so there only
    the sizes are compared, not their order)."""
    folder = kt.need_lab_dump(release, "sysrq", name)
    info = folder / "truth" / "vmallocinfo"
    if not info.exists():
        pytest.skip(f"{folder} was made before the lab recorded vmallocinfo")
    want = [int(line.split()[1]) for line in info.read_text().splitlines()
            if line.split()[2:3] != ["vm_map_ram"] and "unpurged" not in line]
    t = open_target(str(folder / name), config=Config())
    out, err = run(t, "kmem -v")
    assert not err, err
    got = [int(line.split()[-1]) for line in out.splitlines()[1:]]
    if t.symbols.lookup("vmap_area_list") is not None:
        matcher = difflib.SequenceMatcher(a=got, b=want, autojunk=False)
        assert sum(b.size for b in matcher.get_matching_blocks()) >= len(want) - 3, (len(got), len(want))
    assert sum((Counter(got) & Counter(want)).values()) >= len(want) - 3, (len(got), len(want))
    starts = [int(line.split()[2], 16) for line in out.splitlines()[1:]]
    assert starts == sorted(starts)
