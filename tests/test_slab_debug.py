"""slub_debug forensics on the red-zone dump, against the kernel's own SLUB report and crash.

Oracles: the kernel's report in console.log (which bytes were damaged, the
alloc and free tracks with their stacks, the slab's counters and free
pointer), the module's own log lines (the four objects it allocated), and
crash's ``kmem -S`` FREE/[ALLOCATED] marks. Bad input is made by a memory
overlay that patches the dump's bytes the way real corruption would (a free
pointer stored with the kernel's hardening xor, a cache's list pointer, a
track's depot handle).
"""

from __future__ import annotations

import re

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.os.linux.slab.objects import encode_free_pointer
from pmdb.os.linux.slab.slub import SlubModel, slub_model
from pmdb.target import Target
from tests.conftest import need_fixture
from tests.fuzz.overlay import Overlay
from tests.linux_session import SLUB, run, target_for
from tests.linux_vmcore import crash_sections

DUMP = "dump.202611222031"
_STAMP = re.compile(r"^\[\s*\d+\.\d+\] ?")


def _console() -> list[str]:
    text = need_fixture(SLUB / "console.log").read_text(errors="replace")
    return [_STAMP.sub("", line) for line in text.splitlines()]


def _report() -> dict[str, object]:
    """The facts of the kernel's SLUB report."""
    lines = _console()
    i = next(n for n, line in enumerate(lines) if line.startswith("BUG kmalloc-128"))
    rng = re.match(r"0x([0-9a-f]+)-0x([0-9a-f]+) @offset=(\d+)\. First byte 0x(\w+) instead of 0x(\w+)",
                   lines[i + 3])
    assert rng is not None
    alloc = i + 4
    free = next(n for n in range(alloc, alloc + 40) if lines[n].startswith("Freed in"))
    slab = next(n for n in range(free, free + 40) if lines[n].startswith("Slab 0x"))
    obj = re.match(r"Object 0x([0-9a-f]+) @offset=(\d+) fp=0x([0-9a-f]+)", lines[slab + 1])
    red = next(line for line in lines[slab:] if line.startswith("Redzone  " + rng.group(1)[:16]))
    assert obj is not None
    return {"start": int(rng.group(1), 16), "end": int(rng.group(2), 16), "offset": int(rng.group(3)),
            "first": int(rng.group(4), 16), "expected": int(rng.group(5), 16),
            "alloc_head": lines[alloc], "alloc_stack": [s.strip() for s in lines[alloc + 1:free]],
            "free_head": lines[free], "free_stack": [s.strip() for s in lines[free + 1:slab]],
            "slab": lines[slab], "object": int(obj.group(1), 16), "obj_offset": int(obj.group(2)),
            "fp": int(obj.group(3), 16),
            "red_bytes": bytes(int(b, 16) for b in re.findall(r"(?<= )([0-9a-f]{2})(?= )", red.split(":", 1)[1]))}


def _module_objects() -> list[int]:
    found = [re.search(r"redzone object (\d): 100 bytes at ([0-9a-f]+)", line) for line in _console()]
    return [int(m.group(2), 16) for m in found if m]


# -- the kernel's report -------------------------------------------------------------------

def test_kmem_verify_finds_the_damaged_red_zone() -> None:
    rep = _report()
    out, err = run(target_for(SLUB, DUMP), "::kmem_verify")
    assert err == ""
    rows = [line for line in out.splitlines()[1:] if re.match(r"^[0-9a-f]{16} ", line)]
    bad = [r for r in rows if not r.endswith(" clean")]
    assert [r.split()[1:] for r in bad] == [["kmalloc-128", "16", "1", "corrupt", "buffer"]]
    details = out.splitlines()[len(rows) + 1:]
    length = rep["end"] - rep["start"] + 1                      # type: ignore[operator]
    found = " ".join(f"{b:02x}" for b in rep["red_bytes"][:length])  # type: ignore[index]
    assert details == [
        f"kmalloc-128: allocated buffer {rep['object']:x}: right red zone overwritten at "
        f"+{rep['start'] - rep['object']:#x} ({rep['start']:x}-{rep['end']:x}, "  # type: ignore[operator]
        f"@offset={rep['offset']}): expected {rep['expected']:#04x}, found {found}"]
    assert found.split()[0] == f"{rep['first']:02x}"


def _audit_tracks(lines: list[str]) -> tuple[list[str], list[str], list[str], list[str]]:
    a = next(i for i, line in enumerate(lines) if line.startswith("  allocated in "))
    f = next(i for i, line in enumerate(lines) if line.startswith("  freed in "))
    return lines[a], [s.strip() for s in lines[a + 1:f]], lines[f], [s.strip() for s in lines[f + 1:]]


def _age(head: str) -> int:
    m = re.search(r"age=(\d+)", head)
    assert m is not None
    return int(m.group(1))


@pytest.mark.parametrize("command", ["::bufctl_audit", "$<bufctl_audit", "::whatis_slab"])
def test_audit_shows_the_stacks_the_kernel_printed(command: str) -> None:
    rep = _report()
    t = target_for(SLUB, DUMP)
    addr = rep["object"] + 0x20                                 # type: ignore[operator]
    if command == "::whatis_slab":
        from pmdb.os.linux.slab.text import describe_slab_address
        lines = describe_slab_address(t, addr) or []
        assert lines[0].startswith(f"{addr:x} is {rep['object']:x}+0x20, an allocated kmalloc-128 object")
    else:
        out, err = run(t, f"{addr:x}{' ' if command.startswith('$') else ''}{command}")
        assert err == ""
        lines = out.splitlines()
        assert lines[0].startswith(f"object {rep['object']:x} of cache kmalloc-128 ")
        assert lines[0].endswith(": allocated")
        assert f"slab offset {rep['obj_offset']:#x}" in lines[1]
    a_head, a_stack, f_head, f_stack = _audit_tracks(lines)
    assert a_stack == rep["alloc_stack"] and f_stack == rep["free_stack"]
    kernel_alloc = re.match(r"Allocated in (\S+ (?:\[\w+\] )?)age=\d+ (cpu=\d+ pid=\d+)", rep["alloc_head"])  # type: ignore[arg-type]
    kernel_free = re.match(r"Freed in (\S+ (?:\[\w+\] )?)age=\d+ (cpu=\d+ pid=\d+)", rep["free_head"])  # type: ignore[arg-type]
    assert kernel_alloc and kernel_free
    assert a_head.startswith(f"  allocated in {kernel_alloc.group(1)}") and a_head.endswith(kernel_alloc.group(2))
    assert f_head.startswith(f"  freed in {kernel_free.group(1)}") and f_head.endswith(kernel_free.group(2))
    # the dump was taken some jiffies after the report: ages shift, their difference does not
    assert _age(f_head) - _age(a_head) == _age(rep["free_head"]) - _age(rep["alloc_head"])  # type: ignore[arg-type]


def test_slab_counters_and_free_pointer_as_the_kernel_reported() -> None:
    rep = _report()
    model = slub_model(target_for(SLUB, DUMP))
    hit = model.slab_of(rep["object"])                          # type: ignore[arg-type]
    assert hit is not None
    slab, cache = hit
    m = re.match(r"Slab 0x([0-9a-f]+) objects=(\d+) used=(\d+) fp=0x([0-9a-f]+)", rep["slab"])  # type: ignore[arg-type]
    assert m is not None
    assert (slab.page, slab.objects, slab.inuse, slab.freelist) == tuple(int(g, 16) if i in (0, 3) else int(g)
                                                                         for i, g in enumerate(m.groups()))
    assert rep["object"] - slab.base == rep["obj_offset"]       # type: ignore[operator]
    from pmdb.os.linux.slab.objects import decode_free_pointer
    where = rep["object"] + cache.offset                         # type: ignore[operator]
    assert decode_free_pointer(cache, model.space.u64(where), where) == rep["fp"]


def test_kmalog_lists_the_module_transactions_in_time_order() -> None:
    objs = _module_objects()
    assert len(objs) == 4
    crash = crash_sections(SLUB, "kmem -S ffff88d082d28380")[-1]       # redzone off: objects
    free = {int(line.split()[0], 16) for line in crash if re.match(r"^   [0-9a-f]{16}", line)}
    out, err = run(target_for(SLUB, DUMP), "::kmalog -c kmalloc-128")
    assert err == ""
    heads = [line for line in out.splitlines() if line.startswith("T-")]
    times = [float(h.split()[0][2:]) for h in heads]
    assert times == sorted(times) and len(heads) > 100          # newest first
    mine = [(int(h.split()[1], 16), h.split()[3], h.split()[4]) for h in heads if "[crashdrv]" in h]
    expected_allocs = {(o, "alloc", "crashdrv_redzone+0x21/0xf5") for o in objs}
    assert {m for m in mine if m[1] == "alloc"} == expected_allocs
    freed = [m for m in mine if m[1] == "free"]
    assert {m[0] for m in freed} == {o for o in objs if o in free} and len(freed) == 2
    for obj in {m[0] for m in mine}:       # an object's latest event is its state in the dump
        first = next(k for o, k, _ in mine if o == obj)
        assert first == ("free" if obj in free else "alloc"), hex(obj)
    # the freelist is LIFO: object 3 (its head, per crash's slab fp) was freed after object 1
    assert [m[0] for m in freed] == [objs[3], objs[1]]


# -- bad input -------------------------------------------------------------------------------

def _patched(patch: dict[int, bytes] | None = None, builder=None) -> Target:  # type: ignore[no-untyped-def]
    """A fresh target whose slab model reads through an overlay."""
    t = open_target(str(need_fixture(SLUB / DUMP)), config=Config())
    clean = slub_model(t)
    patches = patch if patch is not None else builder(clean)
    t._slub_model = SlubModel(Overlay(clean.space, patches), clean.layout,  # type: ignore[attr-defined]
                              _info(t), clean.lookup, t.types)
    return t


def _info(t: Target):  # type: ignore[no-untyped-def]
    from pmdb.os.linux.mm.kernel_memory import kernel_parts
    parts = kernel_parts(t)
    assert parts is not None
    return parts.info


def _free_pointer_patch(model: SlubModel, obj: int, points_to: int) -> dict[int, bytes]:
    cache = next(c for c in model.caches() if c.name == "kmalloc-128")
    where = obj + cache.offset
    return {where: encode_free_pointer(cache, points_to, where).to_bytes(8, "little")}


def test_freelist_cycle_is_one_line_and_the_rest_still_shown() -> None:
    objs = _module_objects()
    # object 1 is the freelist's second entry; pointing it back at object 3 (the head) loops
    t = _patched(builder=lambda m: _free_pointer_patch(m, objs[1], objs[3]))
    out, err = run(t, "::kmem_verify kmalloc-128", "::kmastat kmalloc-128")
    loops = [line for line in out.splitlines() if "loops" in line]
    assert loops == [f"kmalloc-128: freelist of slab fffffb6d400b4a00 loops: {objs[3]:#x} is on it twice"]
    assert any("right red zone overwritten" in line for line in out.splitlines())
    assert "kmalloc-128" in out.splitlines()[-1] and err == ""


def test_free_pointer_outside_the_slab_is_one_line() -> None:
    objs = _module_objects()
    wild = 0xFFFF88D082D40000
    t = _patched(builder=lambda m: _free_pointer_patch(m, objs[3], wild))
    out, err = run(t, "::kmem_verify kmalloc-128", "::walk freemem kmalloc-128")
    lines = out.splitlines()
    assert f"kmalloc-128: freelist of slab fffffb6d400b4a00: free pointer {wild:#x} (read at " \
           f"{objs[3] + 0x88:#x}) is outside the slab" in lines
    assert any(line.startswith(f"kmalloc-128: free buffer {objs[3]:x}: free pointer at +0x88") for line in lines)
    assert any("right red zone overwritten" in line for line in lines)
    # the walk still lists the other slabs' free objects, and says once why one chain stopped
    assert f"{objs[3]:x}" in lines and f"{objs[1]:x}" not in lines
    assert sum("outside the slab" in line for line in lines if line.startswith("pmdb: ")) == 1
    assert err == ""


def test_cache_list_loop_is_one_line() -> None:
    def loop(model: SlubModel) -> dict[int, bytes]:
        caches = model.caches()
        # the fifth cache's list.next goes back to the second: a loop not through the head
        at = caches[4].address + model.lay.cache_list
        return {at: (caches[1].address + model.lay.cache_list).to_bytes(8, "little")}

    t = _patched(builder=loop)
    out, err = run(t, "::kmastat")
    rows = out.splitlines()[1:]
    assert len(rows) == 6 and err == ""
    assert rows[-1].startswith("pmdb: slab_caches: ") and "loops back" in rows[-1]


def test_depot_handle_that_points_nowhere_is_one_line() -> None:
    rep = _report()
    obj = rep["object"]

    def bad_handle(model: SlubModel) -> dict[int, bytes]:
        cache = next(c for c in model.caches() if c.name == "kmalloc-128")
        at = obj + cache.info_end + 8                            # type: ignore[operator]
        return {at: (0x4000000 | 0x3FF << 16 | 0x20).to_bytes(4, "little")}   # valid, pool 32

    t = _patched(builder=bad_handle)
    out, err = run(t, f"{obj:x}::bufctl_audit")
    lines = out.splitlines()
    a_head, a_stack, f_head, f_stack = _audit_tracks(lines)
    assert len(a_stack) == 1 and a_stack[0].startswith("(stack depot handle 0x")
    assert "past the last one in use" in a_stack[0] or "not its record" in a_stack[0]
    assert f_stack == rep["free_stack"] and err == ""


def test_free_buffer_modified_after_free_is_found_with_its_bytes() -> None:
    objs = _module_objects()
    # a use-after-free write of "UAF!" into object 1 (free: poisoned 0x6b) at +0x10
    t = _patched({objs[1] + 0x10: b"UAF!"})
    out, err = run(t, "::kmem_verify kmalloc-128")
    assert err == ""
    assert f"kmalloc-128: free buffer {objs[1]:x}: buffer modified after being freed at +0x10 " \
           f"({objs[1] + 0x10:x}-{objs[1] + 0x13:x}, @offset={objs[1] + 0x10 - 0xffff88d082d28000}): " \
           f"expected 0x6b, found 55 41 46 21" in out.splitlines()


def test_kmastat_v_has_a_row_per_node_with_the_node_counters() -> None:
    out, _ = run(target_for(SLUB, DUMP), "::kmastat -v kmalloc-128")
    lines = out.splitlines()
    crash = crash_sections(SLUB, "kmem -S kmalloc-128")[0]
    addr, objsize, alloc, total, slabs, _, name = crash[1].split()
    assert lines[1].split()[:6] == [addr, name, objsize, alloc, total, slabs]
    node = next(line for line in crash if re.match(r"^[0-9a-f]{16}\s+0\s", line)).split()
    # KMEM_CACHE_NODE NODE SLABS PARTIAL PER-CPU: one node holds every object and slab here
    assert lines[2].split() == ["node", "0", total, node[2], f"{node[3]}", "partial"]
