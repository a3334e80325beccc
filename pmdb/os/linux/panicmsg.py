"""The panic message, found in the kernel log the way crash's ``sys`` finds it.

Reads just enough of the lockless printk ring (Linux 5.10+: ``prb``, a ring
of descriptors and one of text) to list the log's lines in order, then
searches them in crash's order of precedence. ::msgbuf has the full reader;
this one only needs the texts.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pmdb.errors import PmdbError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.kmodules import StructOffsets

Lookup = Callable[[str], "int | None"]

# Searched pass by pass: the first line that matches in the earliest pass wins (crash's order).
PANIC_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("general protection fault: ", "double fault: ", "divide error: ", "stack segment: "),
    ("SysRq : Netdump", "SysRq : Crash", "SysRq : Trigger a crash", "sysrq: Trigger a crash"),
    ("Kernel panic: ", "Kernel panic - "),
    ("Oops: ", "Kernel BUG at", "kernel BUG at", "Unable to handle kernel paging request",
     "Unable to handle kernel NULL pointer dereference", "BUG: unable to handle kernel"),
)

_STATE_SHIFT = 62            # prb_desc.state_var: two state bits on top of the id
_COMMITTED, _FINALIZED = 1, 2
_MAX_DESCS = 1 << 24


def log_texts(mem: AddressSpace, lookup: Lookup, offsets: StructOffsets) -> list[str]:
    """The text of every committed record of the printk ring, oldest first; [] when the
    kernel has no lockless ring (before 5.10) or it cannot be read."""
    prb_var = lookup("prb")
    if prb_var is None:
        return []
    try:
        return _read_ring(mem, mem.ptr(prb_var), offsets)
    except (PmdbError, struct.error, ValueError):
        return []


def _read_ring(mem: AddressSpace, prb: int, o: StructOffsets) -> list[str]:
    desc_ring = prb + o.offsetof("printk_ringbuffer", "desc_ring")
    text_ring = prb + o.offsetof("printk_ringbuffer", "text_data_ring")
    count_bits = mem.u32(desc_ring + o.offsetof("prb_desc_ring", "count_bits"))
    count = 1 << count_bits
    if count > _MAX_DESCS:
        return []
    descs = mem.ptr(desc_ring + o.offsetof("prb_desc_ring", "descs"))
    infos = mem.ptr(desc_ring + o.offsetof("prb_desc_ring", "infos"))
    size_bits = mem.u32(text_ring + o.offsetof("prb_data_ring", "size_bits"))
    data_addr = mem.ptr(text_ring + o.offsetof("prb_data_ring", "data"))
    size = 1 << size_bits
    desc_size, info_size = _struct_sizes(o)
    lpos_off = o.offsetof("prb_desc", "text_blk_lpos")
    seq_off, len_off = o.offsetof("printk_info", "seq"), o.offsetof("printk_info", "text_len")
    raw_descs = mem.read(descs, count * desc_size)
    raw_infos = mem.read(infos, count * info_size)
    data = mem.read(data_addr, size)
    records: list[tuple[int, str]] = []
    for i in range(count):
        state_var, = struct.unpack_from("<Q", raw_descs, i * desc_size)
        if state_var >> _STATE_SHIFT not in (_COMMITTED, _FINALIZED):
            continue
        begin, nxt = struct.unpack_from("<QQ", raw_descs, i * desc_size + lpos_off)
        seq, = struct.unpack_from("<Q", raw_infos, i * info_size + seq_off)
        text_len, = struct.unpack_from("<H", raw_infos, i * info_size + len_off)
        text = _block_text(data, size_bits, begin, nxt, text_len)
        if text is not None:
            records.append((seq, text.decode("utf-8", "replace")))
    records.sort()
    return [t for _, t in records]


def _struct_sizes(o: StructOffsets) -> tuple[int, int]:
    """sizeof(struct prb_desc) and sizeof(struct printk_info), from the member layout."""
    registry = getattr(o, "registry", None)
    if registry is not None:
        return (registry.lookup("struct prb_desc").sizeof(), registry.lookup("struct printk_info").sizeof())
    return 24, 88   # the 64-bit layout of 5.10-6.x


def _block_text(data: bytes, size_bits: int, begin: int, nxt: int, text_len: int) -> bytes | None:
    """A record's text: a data block is an id word then the text; a block that would wrap
    past the end of the ring is stored from its start instead."""
    if begin & 1 or nxt & 1 or begin == nxt:
        return None      # data-less records (failed reservations, empty lines)
    size = 1 << size_bits
    start = begin & (size - 1)
    if begin >> size_bits != nxt >> size_bits:
        start = 0
    text = data[start + 8:start + 8 + text_len]
    return text if len(text) == text_len else None


def panic_message(lines: list[str]) -> str | None:
    """The line crash's ``sys`` would call the panic message."""
    split = [part for line in lines for part in line.split("\n")]
    for patterns in PANIC_PATTERNS:
        for line in split:
            if any(p in line for p in patterns):
                return line
    return None
