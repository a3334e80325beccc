"""Compressed kdump files: makedumpfile -c/-l/-p/-z output and QEMU's kdump-* dumps.

Layout, in blocks of ``block_size`` (the page size): block 0 holds the
disk_dump_header; then ``sub_hdr_size`` blocks of kdump_sub_header (phys_base,
dump level, where VMCOREINFO and the ELF notes are); then ``bitmap_blocks``
blocks holding two bitmaps of equal size (1st: pfns in the memory map, 2nd:
pfns written to the dump); then one 24-byte page descriptor for every set bit
of the 2nd bitmap, in pfn order; then the page data. Everything is read through
a ByteSource, so a flattened file (flattened.py) is read the same way.
"""

from __future__ import annotations

import itertools
import os
import struct
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from pmdb.arch import Arch, by_name
from pmdb.dumps.base import Dump, Note
from pmdb.dumps.elf import PT_NOTE, ProgramHeader, parse_notes
from pmdb.dumps.kdump_pages import PageDescriptor, decompress_run, stored_page
from pmdb.errors import FaultError, FormatError
from pmdb.memory.space import AddressSpace, Chunk

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8

UTS_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
UTS_LEN = 65
MAX_NOTES_SIZE = 64 << 20        # thousands of CPUs need a few MB; more is a corrupt header
MAX_VMCOREINFO_SIZE = 1 << 20
BULK_READ = 64 * 1024            # a read this long (a scan of memory) decompresses its pages in
                                 # one pass, past the page cache
PAGE_CACHE_PAGES = 4096          # 16 MB of 4 KB pages: every task's stack and the ORC tables of a
                                 # foreach bt fit (1024 decompressed ~160 pages twice)

# utsname.machine -> (pmdb arch, bits); None: the dumped kernel's word size is unknown.
MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
            "i386": "i386", "i486": "i386", "i586": "i386", "i686": "i386", "sparc64": "sparc64"}

# makedumpfile dump level bits, for saying why a page is not in the dump.
DUMP_LEVEL_BITS = ((1, "zero"), (2, "cache"), (4, "private cache"), (8, "user"), (16, "free"))


class SizedSource(Protocol):
    """A ByteSource that also knows its size and a name for messages (FileSource, FlattenedSource)."""

    path: str
    size: int

    def read_at(self, offset: int, n: int) -> bytes: ...


@dataclass(frozen=True)
class DiskDumpHeader:
    """The kdump file's disk_dump_header: version, utsname, time, block size, bitmaps."""

    signature: bytes
    header_version: int
    utsname: dict[str, str]
    timestamp: tuple[int, int]          # (seconds, microseconds)
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int
    nr_cpus: int
    current_cpu: int


@dataclass(frozen=True)
class SubHeader:
    """The kdump sub-header: phys_base, dump level, split range, where notes and VMCOREINFO are."""

    phys_base: int
    dump_level: int
    split: int
    start_pfn: int
    end_pfn: int
    offset_vmcoreinfo: int
    size_vmcoreinfo: int
    offset_note: int
    size_note: int
    offset_eraseinfo: int
    size_eraseinfo: int
    max_mapnr: int                      # 0 before header version 6


def _fail(src: SizedSource, what: str) -> FormatError:
    return FormatError(f"{os.path.basename(src.path)}: {what}")


def _read(src: SizedSource, offset: int, n: int, what: str) -> bytes:
    """Header bytes, or a FormatError that names what was cut off."""
    if offset < 0 or offset + n > src.size:
        raise _fail(src, f"truncated kdump file: {what} needs bytes {offset:#x}-{offset + n:#x} "
                         f"but the file has {src.size:#x}")
    return src.read_at(offset, n)


def header_layout(raw: bytes) -> tuple[str, int]:
    """(struct byte-order char, word bits) of a disk_dump_header.

    The byte order is the one in which header_version is a small number; the
    word size follows utsname.machine (the timeval that follows it is two longs).
    """
    little, big = struct.unpack_from("<i", raw, 8)[0], struct.unpack_from(">i", raw, 8)[0]
    endian = "<" if 0 < little < 0x10000 or not 0 < big < 0x10000 else ">"
    machine = raw[12 + 4 * UTS_LEN:12 + 5 * UTS_LEN].split(b"\0", 1)[0].decode("latin-1")
    bits = 32 if machine in ("i386", "i486", "i586", "i686", "arm", "ppc", "mips", "s390", "sparc") else 64
    return endian, bits


def parse_header(src: SizedSource) -> tuple[DiskDumpHeader, str, int]:
    """The disk_dump_header, checked; also the byte order and word size it implies."""
    raw = _read(src, 0, 8, "the signature")
    if raw not in (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE):
        raise _fail(src, "not a kdump file (no KDUMP signature)")
    raw = _read(src, 0, 12 + 6 * UTS_LEN + 6 + 16 + 40, "the disk_dump_header")
    e, bits = header_layout(raw)
    # QEMU lays the header out by the ELF class it picked, not by the guest's word size: an
    # i386 guest whose memory reaches 4 GB gets the 64-bit layout with machine "i686"
    hdr = _header_fields(raw, e, bits)
    if not _page_size(hdr.block_size) and _page_size(_header_fields(raw, e, 96 - bits).block_size):
        bits = 96 - bits
        hdr = _header_fields(raw, e, bits)
    _check_header(src, hdr)
    return hdr, e, bits


def _header_fields(raw: bytes, e: str, bits: int) -> DiskDumpHeader:
    uts = {name: raw[12 + i * UTS_LEN:12 + (i + 1) * UTS_LEN].split(b"\0", 1)[0].decode("latin-1")
           for i, name in enumerate(UTS_FIELDS)}
    at = 12 + 6 * UTS_LEN
    at += (-at) % (bits // 8)
    tv = struct.unpack_from(e + ("qq" if bits == 64 else "ii"), raw, at)
    at += 16 if bits == 64 else 8
    (status, block_size, sub_hdr, bitmap_blocks, max_mapnr, _ram, _dev, _written, cur_cpu,
     nr_cpus) = struct.unpack_from(e + "IiiIIIIIIi", raw, at)
    return DiskDumpHeader(raw[:8], struct.unpack_from(e + "i", raw, 8)[0], uts, (tv[0], tv[1]), status,
                          block_size, sub_hdr, bitmap_blocks, max_mapnr, nr_cpus, cur_cpu)


def _page_size(bs: int) -> bool:
    return 512 <= bs <= 1 << 20 and not bs & (bs - 1)


def _check_header(src: SizedSource, hdr: DiskDumpHeader) -> None:
    bs = hdr.block_size
    if not _page_size(bs):
        raise _fail(src, f"corrupt kdump header: block_size {bs} is not a page size")
    if not 0 <= hdr.sub_hdr_size < 1 << 16:
        raise _fail(src, f"corrupt kdump header: sub_hdr_size {hdr.sub_hdr_size}")
    if hdr.bitmap_blocks == 0 or hdr.bitmap_blocks % 2:
        raise _fail(src, f"corrupt kdump header: bitmap_blocks {hdr.bitmap_blocks} (must be even)")
    end = (1 + hdr.sub_hdr_size + hdr.bitmap_blocks) * bs
    if end > src.size:
        raise _fail(src, f"truncated or corrupt kdump file: its bitmaps end at {end:#x} "
                         f"but the file has {src.size:#x} bytes")


def parse_sub_header(src: SizedSource, hdr: DiskDumpHeader, e: str, bits: int) -> SubHeader:
    """The kdump_sub_header; fields newer than the header version read as 0."""
    if hdr.signature == DISKDUMP_SIGNATURE or hdr.sub_hdr_size == 0:
        return SubHeader(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    fmt = e + ("QiiQQqQqQqQQQQ" if bits == 64 else "IiiIIqIqIqIQQQ")
    raw = _read(src, hdr.block_size, struct.calcsize(fmt), "the kdump sub-header")
    f = list(struct.unpack(fmt, raw))
    v = hdr.header_version
    # Fields appeared one header version at a time (makedumpfile's diskdump_mod.h).
    for first, idx in ((2, (2, 3, 4)), (3, (5, 6)), (4, (7, 8)), (5, (9, 10)), (6, (11, 12, 13))):
        if v < first:
            for i in idx:
                f[i] = 0
    phys_base = f[0] - (1 << bits) if f[0] >> (bits - 1) else f[0]
    start, end = (f[11], f[12]) if v >= 6 else (f[3], f[4])
    return SubHeader(phys_base, f[1], f[2], start, end, f[5], f[6], f[7], f[8], f[9], f[10], f[13])


class Bitmap:
    """One kdump bitmap, read from the file in granules; never expanded into a list.

    ``rank(pfn)`` (set bits before pfn) gives a page's descriptor index. The
    counts per granule are summed lazily, only as far as a lookup needs, so
    opening a dump costs nothing; a granule a lookup reaches is kept with its
    counts per 64-byte block, so a lookup pops at most 64 bytes.
    """

    GRANULE = 4096  # bytes, i.e. 32768 pfns

    def __init__(self, src: SizedSource, offset: int, nbytes: int) -> None:
        self.src = src
        self.offset = offset
        self.nbytes = nbytes
        self._prefix = [0]      # _prefix[g] = set bits in granules [0, g)
        self._sub: dict[int, tuple[bytes, list[int]]] = {}

    def test(self, pfn: int) -> bool:
        byte = pfn >> 3
        if pfn < 0 or byte >= self.nbytes:
            return False
        kept = self._sub.get(byte // self.GRANULE)     # a granule a rank read (most page misses)
        if kept is not None:
            return bool(kept[0][byte % self.GRANULE] >> (pfn & 7) & 1)
        return bool(self.src.read_at(self.offset + byte, 1)[0] >> (pfn & 7) & 1)

    def _granule(self, g: int) -> bytes:
        start = g * self.GRANULE
        return self.src.read_at(self.offset + start, min(self.GRANULE, self.nbytes - start))

    def rank(self, pfn: int) -> int:
        byte = min(pfn >> 3, self.nbytes)
        g = byte // self.GRANULE
        while len(self._prefix) <= g:
            k = len(self._prefix) - 1
            count = int.from_bytes(self._granule(k), "little").bit_count() if k * self.GRANULE < self.nbytes else 0
            self._prefix.append(self._prefix[-1] + count)
        data, blocks = self._blocks(g)
        off = byte - g * self.GRANULE
        b = off // self.BLOCK
        n = self._prefix[g] + blocks[b] + int.from_bytes(data[b * self.BLOCK:off], "little").bit_count()
        if off < len(data) and pfn & 7:
            n += (data[off] & ((1 << (pfn & 7)) - 1)).bit_count()
        return n

    BLOCK = 64  # bytes: a granule's set bits are also counted per block, so a rank reads < 64

    def _blocks(self, g: int) -> tuple[bytes, list[int]]:
        """Granule g's bytes and the set bits before each of its blocks (kept: every page
        read of a dump asks a rank, most of them in a few granules)."""
        hit = self._sub.get(g)
        if hit is None:
            data = self._granule(g) if g * self.GRANULE < self.nbytes else b""
            counts = (int.from_bytes(data[i:i + self.BLOCK], "little").bit_count()
                      for i in range(0, len(data), self.BLOCK))
            hit = self._sub[g] = (data, list(itertools.accumulate(counts, initial=0)))
        return hit

    def runs(self, limit_pfn: int) -> list[tuple[int, int]]:
        """Runs [first, end) of set bits below limit_pfn, a few hundred bytes at a time."""
        out: list[tuple[int, int]] = []
        step = 256  # small pieces keep the big-integer shifts below cheap
        for start in range(0, min(self.nbytes, (limit_pfn + 7) // 8), step):
            value = int.from_bytes(self.src.read_at(self.offset + start, min(step, self.nbytes - start)),
                                   "little")
            pos = start * 8
            while value:
                low = (value & -value).bit_length() - 1          # zeros before the next run
                value >>= low
                pos += low
                ones = (~value & (value + 1)).bit_length() - 1   # length of the run
                if out and out[-1][1] == pos:
                    out[-1] = (out[-1][0], pos + ones)
                else:
                    out.append((pos, pos + ones))
                value >>= ones
                pos += ones
        return [(a, min(b, limit_pfn)) for a, b in out if a < limit_pfn]


class KdumpFile(Dump):
    """A compressed kdump (or diskdump) file: physical memory by page frame number."""

    kind = "vmcore"

    def __init__(self, source: SizedSource, path: str | None = None) -> None:
        self.src = source
        self.path = path or source.path
        self.header, self._e, self.bits = parse_header(source)
        self._desc_format = struct.Struct(self._e + "qIIQ")     # a page_desc_t
        self.sub = parse_sub_header(source, self.header, self._e, self.bits)
        hdr = self.header
        self.page_size = hdr.block_size
        self.max_mapnr = self.sub.max_mapnr or hdr.max_mapnr
        half = hdr.bitmap_blocks * hdr.block_size // 2
        if self.max_mapnr > half * 8:
            raise _fail(source, f"corrupt kdump header: max_mapnr {self.max_mapnr:#x} needs a bitmap of "
                                f"{(self.max_mapnr + 7) // 8} bytes but it has {half}")
        bitmap_at = (1 + hdr.sub_hdr_size) * hdr.block_size
        self.memory_map = Bitmap(source, bitmap_at, half)
        self.dumped = Bitmap(source, bitmap_at + half, half)
        self.desc_offset = bitmap_at + 2 * half
        self._first_rank = self.dumped.rank(self.sub.start_pfn) if self.sub.split else 0
        self.notes = self._notes()
        self.vmcoreinfo = self._vmcoreinfo()
        self.arch: Arch = self._arch()
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._space: KdumpSpace | None = None

    @property
    def utsname(self) -> dict[str, str]:
        return self.header.utsname

    @property
    def dump_level(self) -> int:
        return self.sub.dump_level

    def _notes(self) -> list[Note]:
        size, off = self.sub.size_note, self.sub.offset_note
        if not size:
            return []
        if size > MAX_NOTES_SIZE or off + size > self.src.size or off < 0:
            raise _fail(self.src, f"corrupt kdump sub-header: notes of {size:#x} bytes at {off:#x} "
                                  f"do not fit in the file ({self.src.size:#x} bytes)")
        ph = ProgramHeader(PT_NOTE, 0, off, 0, size, size)
        return parse_notes(self.src, ph, self._e)  # type: ignore[arg-type]

    def _vmcoreinfo(self) -> str:
        """VMCOREINFO from the sub-header (raw text), else from the notes."""
        size, off = self.sub.size_vmcoreinfo, self.sub.offset_vmcoreinfo
        if size:
            if size > MAX_VMCOREINFO_SIZE or off < 0 or off + size > self.src.size:
                raise _fail(self.src, f"corrupt kdump sub-header: VMCOREINFO of {size:#x} bytes at "
                                      f"{off:#x} does not fit in the file")
            return self.src.read_at(off, size).decode("latin-1").rstrip("\0")
        for note in self.notes:
            if note.name == "VMCOREINFO":
                return note.desc.decode("latin-1").rstrip("\0")
        return ""

    def _arch(self) -> Arch:
        machine = self.header.utsname.get("machine", "")
        if machine in MACHINES:
            return by_name(MACHINES[machine])
        if not machine or machine == "Unknown":
            # QEMU's kdump leaves utsname empty (x86-64) or "Unknown" (arm64): VMCOREINFO
            # still names each CPU's own symbols.
            if "SYMBOL(init_top_pgt)" in self.vmcoreinfo or "NUMBER(pgtable_l5_enabled)" in self.vmcoreinfo:
                return by_name("x86_64")
            if "NUMBER(kimage_voffset)" in self.vmcoreinfo:
                return by_name("aarch64")
            raise _fail(self.src, "kdump header names no machine and VMCOREINFO does not tell it")
        raise _fail(self.src, f"kdump of a {machine!r} kernel: pmdb does not support that CPU")

    # -- pages ---------------------------------------------------------------

    def absent_reason(self, pfn: int) -> str | None:
        """Why pfn's page cannot be read, or None when the dump holds it."""
        if pfn >= self.max_mapnr:
            return f"beyond the dump's physical memory (max pfn {self.max_mapnr:#x})"
        if self.sub.split and not self.sub.start_pfn <= pfn < self.sub.end_pfn:
            return (f"in another part of this split dump (this file holds pfns "
                    f"{self.sub.start_pfn:#x}-{self.sub.end_pfn:#x})")
        if not self.dumped.test(pfn):
            if not self.memory_map.test(pfn):
                return "no memory at this physical address (a hole in the dump's memory map)"
            return f"page excluded from the dump ({self._level_text()})"
        return None

    def _level_text(self) -> str:
        level = self.sub.dump_level
        kinds = [name for bit, name in DUMP_LEVEL_BITS if level & bit]
        if not kinds:
            return f"makedumpfile dump level {level}"
        listed = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} and {kinds[-1]}"
        return f"makedumpfile dump level {level}: {listed} pages left out"

    def descriptor(self, pfn: int) -> PageDescriptor:
        """The page descriptor of a dumped pfn (the caller checked the 2nd bitmap)."""
        return PageDescriptor(*self._raw_descriptor(pfn))

    def _raw_descriptor(self, pfn: int) -> tuple[int, int, int, int]:
        """descriptor()'s fields (offset, size, flags, page_flags), no object made: a page
        miss reads one."""
        at = self._descriptor_at(pfn)
        if at + PageDescriptor.SIZE > self.src.size:
            raise FaultError(pfn * self.page_size, self.page_size, "page descriptor past the end of "
                                                                   "the file (truncated dump)")
        return self._desc_format.unpack(self.src.read_at(at, PageDescriptor.SIZE))

    def _descriptor_at(self, pfn: int) -> int:
        """Where a dumped pfn's descriptor lies in the file: descriptors are in pfn order,
        one per dumped page of this file."""
        return self.desc_offset + (self.dumped.rank(pfn) - self._first_rank) * PageDescriptor.SIZE

    def page(self, pfn: int) -> bytes:
        """The decompressed page ``pfn``; FaultError if left out, cut off or corrupt."""
        data = self._cache.get(pfn)
        if data is not None:
            self._cache.move_to_end(pfn)
            return data
        reason = self.absent_reason(pfn)
        if reason:
            raise FaultError(pfn * self.page_size, self.page_size, reason)
        return self.load_page(pfn)

    def load_page(self, pfn: int) -> bytes:
        """page() of a pfn the caller found present (absent_reason None) and not cached:
        a page miss of KdumpSpace.read asks the bitmaps once, not twice."""
        addr = pfn * self.page_size
        desc = self._raw_descriptor(pfn)
        offset, size = desc[0], desc[1]
        if offset == 0 and size == 0:
            raise FaultError(addr, self.page_size, f"page never written: empty page descriptor"
                                                   f"{self._incomplete_hint()}")
        if offset < 0 or offset + size > self.src.size:
            raise FaultError(addr, self.page_size, f"page data at file offset {offset:#x} "
                                                   f"({size} bytes) lies past the end of the file"
                                                   f"{self._incomplete_hint()}")
        data = stored_page(self.src.read_at(offset, size), desc, self.page_size, addr)
        self._cache[pfn] = data
        if len(self._cache) > PAGE_CACHE_PAGES:
            self._cache.popitem(last=False)
        return data

    def pages(self, first: int, count: int, skip: int = 0, length: int | None = None) -> bytes | None:
        """Pages [first, first+count) decompressed in one pass (for scans of many pages: one
        read of their descriptors, one of their data, no page cache churn), or None when one
        of them is not plainly stored (left out, outside this part of a split dump, an odd
        descriptor): the page-by-page path then says why. A corrupt page is a FaultError.
        With ``skip`` and ``length``, only those bytes of the run, cut from its end pages
        before they are joined (no second copy of megabytes to slice them out)."""
        ps = self.page_size
        if not self._all_dumped(first, count):
            return None
        at = self._descriptor_at(first)
        if at < 0 or at + count * PageDescriptor.SIZE > self.src.size:
            return None
        table = self.src.read_at(at, count * PageDescriptor.SIZE)
        descs = list(self._desc_format.iter_unpack(table))      # offset, size, flags, page_flags
        lo = descs[0][0]
        size = self.src.size
        if any(n <= 0 or o <= 0 or o + n > size for o, n, _, _ in descs):
            return None
        if all(descs[i + 1][0] == o + n for i, (o, n, _, _) in enumerate(descs[:-1])):
            stored = self.src.read_at(lo, descs[-1][0] + descs[-1][1] - lo)
            parts = [stored[o - lo:o - lo + n] for o, n, _, _ in descs]
        else:                               # shared zero pages, or data not in page order
            parts = [self.src.read_at(o, n) for o, n, _, _ in descs]
        out = decompress_run(parts, descs, ps, first * ps)
        end = count * ps if length is None else skip + length
        if end < count * ps:
            out[-1] = out[-1][:end - (count - 1) * ps]
        if skip:
            out[0] = out[0][skip:]
        return b"".join(out)

    def _all_dumped(self, first: int, count: int) -> bool:
        """Whether every page of [first, first+count) is in this file (absent_reason None
        for each), from two bitmap ranks instead of a test per page."""
        end = first + count
        if count <= 0 or first < 0 or end > self.max_mapnr:
            return False
        if self.sub.split and not (self.sub.start_pfn <= first and end <= self.sub.end_pfn):
            return False
        return self.dumped.rank(end) - self.dumped.rank(first) == count

    def stored_pages(self, first: int, count: int) -> list[bytes]:
        """Pages [first, first+count) as the file stores them, in parts to hash one after
        another: each one's descriptor but for its file offset (size, compression flags, page
        flags), then their stored (compressed) bytes; FaultError when one is not dumped.
        Descriptors of consecutive dumped pages are consecutive, and so (as makedumpfile
        writes them) is their data: two reads, no decompression, no object per page, no
        copy of the megabytes read to join them."""
        ps = self.page_size
        if not self._all_dumped(first, count):
            for pfn in range(first, first + count):
                reason = self.absent_reason(pfn)
                if reason:
                    raise FaultError(pfn * ps, ps, reason)
        table = _read(self.src, self._descriptor_at(first), count * PageDescriptor.SIZE, "page descriptors")
        words = array("Q", table)       # three a descriptor: offset, size and flags, page flags
        described = [words[1::3].tobytes(), words[2::3].tobytes()]
        spans = [(o, n) for o, n, _, _ in self._desc_format.iter_unpack(table)]
        lo, hi = min(o for o, _ in spans), max(o + n for o, n in spans)
        if lo >= 0 and hi - lo == sum(n for _, n in spans) and hi <= self.src.size:
            return [*described, self.src.read_at(lo, hi - lo)]
        return [*described, *(self.src.read_at(o, n) for o, n in spans)]

    def _incomplete_hint(self) -> str:
        if self.header.status & DUMP_DH_COMPRESSED_INCOMPLETE:
            return " (the header says the dump is incomplete)"
        if getattr(self.src, "truncated", False):
            return " (the flattened file is truncated)"
        return " (truncated dump?)"

    def ranges(self) -> list[tuple[int, int]]:
        """Physical [start, end) ranges the dump holds, from the 2nd bitmap."""
        ps = self.page_size
        return [(a * ps, b * ps) for a, b in self.dumped.runs(self.max_mapnr)]

    def space(self) -> KdumpSpace:
        if self._space is None:
            self._space = KdumpSpace(self)
        return self._space

    def close(self) -> None:
        self._cache.clear()
        close = getattr(self.src, "close", None)
        if close is not None:
            close()


class _PageReader:
    """Physical address -> bytes within one page, for the Chunks a KdumpSpace hands out."""

    def __init__(self, dump: KdumpFile) -> None:
        self.dump = dump

    def read_at(self, addr: int, n: int) -> bytes:
        ps = self.dump.page_size
        off = addr % ps
        return self.dump.page(addr // ps)[off:off + n]


class KdumpSpace(AddressSpace):
    """Physical memory of a kdump file; a left-out page faults with the reason."""

    def __init__(self, dump: KdumpFile) -> None:
        super().__init__(dump.arch.byteorder, dump.arch.ptr_size)
        self.dump = dump
        self._reader = _PageReader(dump)

    def read(self, addr: int, n: int) -> bytes:
        """A read inside one cached page skips the chunk machinery (kernel walks read small fields)."""
        ps = self.dump.page_size
        off = addr % ps
        if 0 < n <= ps - off and addr >= 0:
            pfn = addr // ps
            page = self.dump._cache.get(pfn)
            if page is None:            # as mapping() and its chunk would, without them
                reason = self.dump.absent_reason(pfn)
                if reason:
                    raise FaultError(addr, n, reason)
                page = self.dump.load_page(pfn)
            return page[off:off + n]
        elif n >= BULK_READ and addr >= 0:
            first = addr // ps
            data = self.dump.pages(first, (addr + n - 1) // ps - first + 1, off, n)
            if data is not None:
                return data
        return super().read(addr, n)

    def stored(self, addr: int, n: int) -> list[bytes]:
        """How [addr, addr+n) is stored, in parts (for pmdb.memory.space.stored_digest)."""
        ps = self.dump.page_size
        first = addr // ps
        return [f"{addr % ps}:{n}:".encode(), *self.dump.stored_pages(first, (addr + n - 1) // ps - first + 1)]

    def mapping(self, addr: int, n: int) -> list[Chunk]:
        ps = self.dump.page_size
        chunks: list[Chunk] = []
        cur, end = addr, addr + n
        if addr < 0:
            raise FaultError(addr, n, "negative physical address")
        while cur < end:
            pfn = cur // ps
            reason = self.dump.absent_reason(pfn)
            if reason:
                raise FaultError(cur, end - cur, reason)
            take = min(end, (pfn + 1) * ps) - cur
            chunks.append(Chunk(cur, take, self._reader, cur))
            cur += take
        return chunks
