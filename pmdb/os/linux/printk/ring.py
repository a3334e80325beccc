"""The kernel log from the lockless printk ring buffer (Linux 5.10 and later).

Read through VMCOREINFO alone (``SYMBOL(prb)`` and the OFFSET/SIZE entries
the kernel exports for exactly this purpose), so the log works on a dump
whose BTF is missing or damaged: the log is what a kernel engineer wants
first, and often what explains why everything else is broken.

The ring has two parts. The descriptor ring holds, per record id, a state
word (the top two bits are the state, the rest the id that owns the slot)
and the logical positions of its text in the data ring; ``infos`` (parallel
to ``descs``) holds the sequence number, timestamp, length, level and
caller. The data ring holds blocks: an 8-byte id then the text, where a
block that would not fit at the end of the ring starts at offset 0 instead.
Ids from ``tail_id`` to ``head_id`` are the records in sequence order;
slots whose state word names another id were reused and are skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FaultError, FormatError, SymbolError
from pmdb.memory.space import AddressSpace

if TYPE_CHECKING:
    from pmdb.os.linux.mm.kernel_memory import KernelMemory

# desc state values, in the top two bits of state_var (kernel/printk/printk_ringbuffer.h)
_COMMITTED, _FINALIZED = 1, 2
_MAX_DESCS = 1 << 22   # a sane bound on count_bits for a damaged header
_MAX_DATA = 1 << 28

LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
              "authpriv", "ftp")


@dataclass(frozen=True)
class LogRecord:
    """One printk record; ``text`` is raw bytes (may hold newlines: one record, several lines)."""

    seq: int
    ts_nsec: int
    level: int
    facility: int
    flags: int
    caller_id: int
    text: bytes
    subsystem: str = ""
    device: str = ""

    @property
    def caller(self) -> str:
        """``T<pid>`` or ``C<cpu>``, as the kernel prints with CONFIG_PRINTK_CALLER."""
        if self.caller_id & 0x80000000:
            return f"C{self.caller_id & 0x7FFFFFFF}"
        return f"T{self.caller_id}"

    @property
    def level_name(self) -> str:
        return LEVELS[self.level & 7]

    @property
    def facility_name(self) -> str:
        return FACILITIES[self.facility] if self.facility < len(FACILITIES) else str(self.facility)


@dataclass(frozen=True)
class RingLayout:
    """Offsets inside the ring's structures, all from VMCOREINFO."""

    desc_ring: int
    text_ring: int
    count_bits: int
    descs: int
    infos: int
    head_id: int
    tail_id: int
    desc_size: int
    state_var: int
    text_lpos: int
    lpos_begin: int
    lpos_next: int
    info_size: int
    seq: int
    ts_nsec: int
    text_len: int
    caller_id: int
    dev_info: int
    subsystem: int
    subsystem_len: int
    device: int
    device_len: int
    size_bits: int
    data: int
    counter: int

    @classmethod
    def from_vmcoreinfo(cls, info: VmcoreInfo) -> RingLayout:
        """SymbolError naming the first missing entry (kernels before 5.10 have another log)."""
        o, s = info.offset, info.size
        return cls(
            desc_ring=o("printk_ringbuffer", "desc_ring"), text_ring=o("printk_ringbuffer", "text_data_ring"),
            count_bits=o("prb_desc_ring", "count_bits"), descs=o("prb_desc_ring", "descs"),
            infos=o("prb_desc_ring", "infos"), head_id=o("prb_desc_ring", "head_id"),
            tail_id=o("prb_desc_ring", "tail_id"), desc_size=s("prb_desc"),
            state_var=o("prb_desc", "state_var"), text_lpos=o("prb_desc", "text_blk_lpos"),
            lpos_begin=o("prb_data_blk_lpos", "begin"), lpos_next=o("prb_data_blk_lpos", "next"),
            info_size=s("printk_info"), seq=o("printk_info", "seq"), ts_nsec=o("printk_info", "ts_nsec"),
            text_len=o("printk_info", "text_len"), caller_id=o("printk_info", "caller_id"),
            dev_info=o("printk_info", "dev_info"), subsystem=o("dev_printk_info", "subsystem"),
            subsystem_len=info.lengths.get("printk_info_subsystem", 16),
            device=o("dev_printk_info", "device"), device_len=info.lengths.get("printk_info_device", 48),
            size_bits=o("prb_data_ring", "size_bits"), data=o("prb_data_ring", "data"),
            counter=info.offsets.get("atomic_long_t.counter", 0))


_MAX_MISSING_RUN = 4096     # records in a row that are not there before the walk gives up


class _Table:
    """An array read in one piece when possible, else element by element (a hole costs one record)."""

    def __init__(self, mem: AddressSpace, base: int, size: int) -> None:
        self.mem, self.base = mem, base
        try:
            self.blob: bytes | None = mem.read(base, size)
        except FaultError:
            self.blob = None

    def get(self, offset: int, n: int) -> bytes:
        if self.blob is not None:
            return self.blob[offset:offset + n]
        return self.mem.read(self.base + offset, n)


class PrintkRing:
    """The ring as the dump holds it; ``records()`` decodes it."""

    def __init__(self, mem: AddressSpace, prb: int, layout: RingLayout) -> None:
        self.mem, self.lay = mem, layout
        dr, tr = prb + layout.desc_ring, prb + layout.text_ring
        count_bits = mem.u32(dr + layout.count_bits)
        size_bits = mem.u32(tr + layout.size_bits)
        # compare the bit counts, not 1 << bits: a damaged u32 would build a 500 MB integer
        if count_bits > _MAX_DESCS.bit_length() or size_bits > _MAX_DATA.bit_length() \
                or not 0 < (1 << count_bits) <= _MAX_DESCS or not 0 < (1 << size_bits) <= _MAX_DATA:
            raise FormatError(f"printk ring at {prb:#x} has impossible sizes "
                              f"(count_bits {count_bits}, size_bits {size_bits})")
        self.count, self.data_size = 1 << count_bits, 1 << size_bits
        # ids, states and lpos are longs and the tables pointers: 4 bytes on a 32-bit kernel
        self.word = mem.ptr_size
        self.id_mask = (1 << (8 * self.word - 2)) - 1     # state_var's top two bits are its state
        self.head_id = mem.ptr(dr + layout.head_id + layout.counter)
        self.tail_id = mem.ptr(dr + layout.tail_id + layout.counter)
        self.descs = _Table(mem, mem.ptr(dr + layout.descs), self.count * layout.desc_size)
        self.infos = _Table(mem, mem.ptr(dr + layout.infos), self.count * layout.info_size)
        self.data = _Table(mem, mem.ptr(tr + layout.data), self.data_size)
        self.skipped = 0   # records whose slot was reused, not committed, or unreadable

    def ids(self) -> range:
        """Record ids from the tail to the head, at most one ring's worth (a bad tail cannot loop)."""
        span = (self.head_id - self.tail_id) & self.id_mask
        if span >= self.count:
            span = self.count - 1
        return range(self.head_id - span, self.head_id + 1)

    def records(self) -> list[LogRecord]:
        """Every committed or finalized record, oldest first. A live ring has at most a few
        records in flight (reserved, reused), so a long run of records that are not there
        means damaged ids or sizes: the walk stops rather than try the rest one by one."""
        out = []
        missing = 0
        for ident in self.ids():
            rec = self.record(ident & self.id_mask)
            if rec is None:
                self.skipped += 1
                missing += 1
                if missing > _MAX_MISSING_RUN:
                    self.skipped += self.head_id - ident
                    break
            else:
                missing = 0
                out.append(rec)
        return out

    def record(self, ident: int) -> LogRecord | None:
        """The record with this id, or None when its slot now belongs to another or is unreadable."""
        lay, slot = self.lay, ident % self.count
        try:
            desc = self.descs.get(slot * lay.desc_size, lay.desc_size)
            w = self.word
            state_var = int.from_bytes(desc[lay.state_var + lay.counter:][:w], "little")
            if state_var & self.id_mask != ident or state_var >> (8 * w - 2) not in (_COMMITTED, _FINALIZED):
                return None
            lpos = desc[lay.text_lpos:]
            begin = int.from_bytes(lpos[lay.lpos_begin:][:w], "little")
            nxt = int.from_bytes(lpos[lay.lpos_next:][:w], "little")
            info = self.infos.get(slot * lay.info_size, lay.info_size)
            text = self._text(ident, begin, nxt, struct.unpack_from("<H", info, lay.text_len)[0])
        except (FaultError, struct.error):
            return None
        if text is None:
            return None
        return self._record(info, text)

    def _text(self, ident: int, begin: int, nxt: int, text_len: int) -> bytes | None:
        """A data block's text; b"" for data-less records, None for an impossible block."""
        if begin & 1 or nxt & 1:   # FAILED_LPOS / NO_LPOS: the record has no text
            return b""
        bits = self.data_size.bit_length() - 1
        if begin >> bits == nxt >> bits and begin < nxt:
            start, size = begin & (self.data_size - 1), nxt - begin
        elif (begin + self.data_size) >> bits == nxt >> bits:
            # the block did not fit at the end of the ring: it was written at offset 0
            start, size = 0, nxt & (self.data_size - 1)
        else:
            return None
        w = self.word                      # the block starts with its id, a long
        if size < w or start + size > self.data_size:
            return None
        block = self.data.get(start, size)
        if int.from_bytes(block[:w], "little") & self.id_mask != ident:
            return None   # the data was overwritten by a later record
        return block[w:w + min(text_len, size - w)]

    def _record(self, info: bytes, text: bytes) -> LogRecord:
        lay = self.lay
        seq, ts = (int.from_bytes(info[o:o + 8], "little") for o in (lay.seq, lay.ts_nsec))
        # facility and flags:5/level:3 follow text_len (u16) in struct printk_info since 5.10;
        # VMCOREINFO does not export them
        facility, bits = info[lay.text_len + 2], info[lay.text_len + 3]
        caller = int.from_bytes(info[lay.caller_id:lay.caller_id + 4], "little")
        dev = lay.dev_info
        subsystem = _cstr(info[dev + lay.subsystem:dev + lay.subsystem + lay.subsystem_len])
        device = _cstr(info[dev + lay.device:dev + lay.device + lay.device_len])
        return LogRecord(seq, ts, bits >> 5, facility, bits & 0x1F, caller, text, subsystem, device)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


def read_log(mem: AddressSpace, info: VmcoreInfo,
             lookup: Callable[[str], int | None] | None = None) -> list[LogRecord]:
    """The kernel log, oldest record first; FormatError/SymbolError when there is no 5.10+ ring."""
    prb_ptr = info.symbols.get("prb")
    if prb_ptr is None and lookup is not None:
        prb_ptr = lookup("prb")
    if prb_ptr is None:
        raise SymbolError("no printk ring buffer: VMCOREINFO has no SYMBOL(prb) (a kernel before 5.10?)")
    layout = RingLayout.from_vmcoreinfo(info)
    try:
        prb = mem.ptr(prb_ptr)   # prb is a pointer (to printk_rb_static, or the dynamic ring)
        return PrintkRing(mem, prb, layout).records()
    except FaultError as err:
        raise FaultError(err.address, err.size, f"printk ring buffer unreadable ({err.reason})") from None


def kernel_log(km: KernelMemory) -> list[LogRecord]:
    """read_log of a kernel's memory, read once and kept with it: ::status looks for the
    panic in the log and ::msgbuf prints it, and a dump does not change."""
    records: list[LogRecord] | None = getattr(km, "_printk_records", None)
    if records is None:
        records = read_log(km.space, km.info, km.lookup)
        km._printk_records = records        # type: ignore[attr-defined]
    return records


# -- formatting ------------------------------------------------------------------

def printable(text: bytes) -> str:
    """crash's rule: printable ASCII and whitespace as they are, anything else as '.'."""
    return text.decode("latin-1").translate(_PRINTABLE)


_PRINTABLE = {i: "." for i in range(256) if not (0x20 <= i < 0x7F or i in b"\t\n\v\f\r")}


def timestamp(rec: LogRecord) -> str:
    """``[    5.085745] ``, as dmesg and crash print it."""
    secs, nsec = divmod(rec.ts_nsec, 1_000_000_000)
    return f"[{secs:5d}.{nsec // 1000:06d}] "


def crash_lines(rec: LogRecord, *, level: bool = False) -> list[str]:
    """crash ``log`` lines: continuation lines are indented under the first line's text."""
    prefix = timestamp(rec) + (f"<{rec.level:x}>" if level else "")
    text = printable(rec.text)
    lines = text.split("\n")
    return [prefix + lines[0]] + [" " * len(prefix) + line for line in lines[1:]]


def text_lines(rec: LogRecord) -> list[str]:
    """Just the text, one line per line of the record."""
    return printable(rec.text).split("\n")
