"""Two small readers under every kernel walk: FieldGroup (several fields of a structure in
one unpack, pmdb/types/fields.py) and AddressSpace.cstring (a NUL-terminated string, read
in one go when it ends in its first page)."""

from __future__ import annotations

import struct

import pytest

from pmdb.errors import FaultError, FormatError
from pmdb.memory.space import Segment, SegmentedSpace
from pmdb.os.linux.slab.slub import slub_model
from pmdb.types.fields import FieldGroup, member_field
from tests.linux_session import target_for
from tests.linux_vmcore import KASLR


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_at(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]


def test_a_field_group_unpacks_each_field_where_it_lies() -> None:
    raw = struct.pack("<QIHBxQ", 0x1122334455667788, 0xAABBCCDD, 0xEEFF, 0x42, 7)
    group = FieldGroup({"last": (16, 8), "word": (0, 8), "half": (12, 2), "int": (8, 4), "byte": (14, 1)})
    assert group.unpack(raw) == {"word": 0x1122334455667788, "int": 0xAABBCCDD, "half": 0xEEFF, "byte": 0x42,
                                 "last": 7}
    assert group.size == 24
    assert group.unpack(b"\0" * 8 + raw, 8)["last"] == 7
    big = FieldGroup({"int": (8, 4)}, "big")
    assert big.unpack(struct.pack(">QI", 0, 5)) == {"int": 5}


@pytest.mark.parametrize("fields", [{"a": (0, 8), "b": (4, 4)}, {"a": (0, 3)}])
def test_a_field_group_refuses_overlaps_and_odd_sizes(fields: dict[str, tuple[int, int]]) -> None:
    with pytest.raises(FormatError):
        FieldGroup(fields)


def test_member_fields_of_the_kernels_own_types() -> None:
    """Offsets and sizes from the fixture's BTF, and the SLUB layout's groups reading what
    the dump holds: the vm_area_struct cache's object size is the BTF's (KMEM_CACHE sizes it
    by sizeof; x86's task_struct cache is sized at boot by the FPU state, so not that one)."""
    t = target_for(KASLR, "dump.202611221942")
    kc = t.types.lookup("struct kmem_cache")
    assert member_field(kc, "size") == (kc.strip().find_member("size")[1] // 8, 4)   # type: ignore[index]
    with pytest.raises(FormatError):
        member_field(t.types.lookup("struct slab"), "inuse")          # a bitfield
    model = slub_model(t)
    caches = model.caches()
    assert len(caches) > 100
    by_name = {c.name: c for c in caches}
    assert by_name["kmalloc-256"].object_size == 256
    assert by_name["vm_area_struct"].object_size == t.types.lookup("struct vm_area_struct").sizeof()
    assert all(c.objects_per_slab * c.size <= c.slab_bytes for c in caches)


def _space(data: bytes, start: int = 0x1000) -> SegmentedSpace:
    return SegmentedSpace([Segment(start, len(data), _Bytes(data))])


def test_a_string_is_read_up_to_its_nul_within_and_across_pages() -> None:
    page = b"A" * 0xFF0 + b"short\0" + b"across-" * 4
    space = _space(page + b"the-page\0rest" + bytes(100))
    assert space.cstring(0x1000 + 0xFF0) == b"short"
    tail = 0x1000 + 0xFF6
    assert space.cstring(tail) == b"across-" * 4 + b"the-page"          # 10 bytes in the first page
    assert space.cstring(tail, limit=5) == b"acros"
    assert space.cstring(0x1000, limit=16) == b"A" * 16


def test_a_string_that_runs_into_a_hole_ends_there() -> None:
    space = _space(b"x" * 0x20, start=0x1FE0)            # the segment ends at a page end
    assert space.cstring(0x1FF0) == b"x" * 0x10
    with pytest.raises(FaultError):
        space.cstring(0x3000)
