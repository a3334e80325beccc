"""Fuzz targets for the file parsers: bytes in, a Dump (or a clean FormatError) out.

Seeds are the heads of the real fixture dumps (headers, notes, bitmaps and page
descriptors live in the first kilobytes) and the fixtures' VMCOREINFO texts.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from pmdb.cache import Cache
from pmdb.dumps import zst
from pmdb.dumps.base import FileSource
from pmdb.dumps.detect import _elf
from pmdb.dumps.flattened import FlattenedSource
from pmdb.dumps.kdump import KdumpFile
from pmdb.dumps.kdump_pages import PageDescriptor, decompress_page
from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FaultError
from tests.conftest import FIXTURES, USER_CORES
from tests.fuzz.harness import CORPUS, FuzzTarget, expect_pmdb_errors

KASLR = FIXTURES / "linux-6.1-x86_64"
HEAD = 64 << 10


class BytesSource:
    """A dump file held in memory (what FileSource is for a path)."""

    def __init__(self, data: bytes, path: str = "fuzz.dump") -> None:
        self.data, self.path, self.size = data, path, len(data)

    def read_at(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise FaultError(offset, n, "past the end of the fuzz input")
        return self.data[offset:offset + n]

    def close(self) -> None:
        pass


class HeadOver:
    """A real dump file whose first bytes are the fuzz input: headers, bitmaps and descriptors
    are damaged while the pages they point at are still there to read."""

    def __init__(self, head: bytes, path: Path) -> None:
        self.head, self.path = head, str(path)
        self.file = _fixture_file(path)
        self.size = max(self.file.size, len(head))

    def read_at(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise FaultError(offset, n, "past the end of the fuzz input")
        if offset >= len(self.head):
            return self.file.read_at(offset, n)
        inside = self.head[offset:offset + n]
        return inside + (self.file.read_at(offset + len(inside), n - len(inside)) if len(inside) < n else b"")

    def close(self) -> None:
        pass                 # the fixture stays open for the next input


@functools.cache
def _fixture_file(path: Path) -> FileSource:
    return FileSource(str(path))


def _head(path: Path, n: int = HEAD) -> bytes:
    if not path.exists():
        return b""
    with open(path, "rb") as f:
        return f.read(n)


def _kept(name: str) -> list[bytes]:
    """The committed corpus of a target (tests/data/fuzz/NAME/*, raw inputs)."""
    folder = CORPUS / name
    return [p.read_bytes() for p in sorted(folder.glob("*")) if p.is_file() and p.suffix != ".json"] \
        if folder.is_dir() else []


# -- ELF cores: header, program headers, notes (NT_PRSTATUS, NT_FILE, VMCOREINFO) -----------

@functools.cache
def _elf_files() -> tuple[Path, ...]:
    """The real ELF cores an input's first byte chooses among: the user cores and the QEMU
    ELF vmcore (its decompressed copy in pmdb's cache)."""
    cores = sorted(USER_CORES.glob("*.core")) if USER_CORES.exists() else []
    vmcore = KASLR / "vmcore.elf.zst"
    if vmcore.exists():
        cores.append(Path(zst.decompressed(str(vmcore))))
    return tuple(cores)


def run_elf(data: bytes) -> None:
    """Byte 0 picks a real core; the rest is its head (ELF header, program headers, notes)
    over the rest of that file."""
    def go() -> None:
        files = _elf_files()
        if not data or not files:
            return
        src = HeadOver(data[1:], files[data[0] % len(files)])
        dump = _elf("fuzz.core", src, None, None)   # type: ignore[arg-type]
        if dump.kind == "user-core":
            from pmdb.os.user.process import UserProcess

            proc = UserProcess(dump, max_frames=8)   # type: ignore[arg-type]
            for t in proc.threads():
                _ = t.registers
            proc.mappings()
        else:
            VmcoreInfo.parse(getattr(dump, "vmcoreinfo", ""))
        for seg in dump.space().segments[:4]:       # type: ignore[attr-defined]
            expect_pmdb_errors(lambda lo=seg.start: dump.space().read(lo, 64))
    expect_pmdb_errors(go)


def seeds_elf() -> list[bytes]:
    return [bytes([i]) + _head(f, 8192) for i, f in enumerate(_elf_files())] + _kept("elf")


# -- compressed kdump: header, sub-header, bitmaps, page descriptors, pages -------------------

KDUMP = KASLR / "dump.202611221942"


def run_kdump(data: bytes) -> None:
    """The input is the head of the real kdump (4 KiB header, sub-header, bitmaps,
    descriptors); the rest of the file is the fixture's, so damaged descriptors still
    point at real compressed pages."""
    def go() -> None:
        src = HeadOver(data, KDUMP) if KDUMP.exists() and len(data) >= 8192 else BytesSource(data)
        dump = KdumpFile(src)
        VmcoreInfo.parse(dump.vmcoreinfo)
        # the first runs of dumped pages (ranges() walks the whole bitmap: O(runs), unbounded)
        for lo, hi in dump.dumped.runs(1 << 16)[:8]:
            for addr in (lo * 4096, hi * 4096 - 4096):
                expect_pmdb_errors(lambda addr=addr: dump.space().read(addr, 4096))
    expect_pmdb_errors(go)


def seeds_kdump() -> list[bytes]:
    return [s for s in (_head(KDUMP), _head(KDUMP, 8192)) if s] + _kept("kdump")


# -- flattened (makedumpfile -F) records ---------------------------------------------------

def run_flattened(data: bytes) -> None:
    def go() -> None:
        flat = KASLR / "vmcore.flat"
        raw = HeadOver(data, flat) if flat.exists() and len(data) >= 8192 else BytesSource(data)
        src = FlattenedSource("fuzz.flat", raw)    # type: ignore[arg-type]
        for off in (0, 4096, src.size // 2, max(src.size - 64, 0)):
            expect_pmdb_errors(lambda off=off: src.read_at(off, 64))
        dump = KdumpFile(src)
        for lo, _hi in dump.dumped.runs(1 << 16)[:4]:
            expect_pmdb_errors(lambda lo=lo: dump.space().read(lo * 4096, 4096))
    expect_pmdb_errors(go)


def seeds_flattened() -> list[bytes]:
    return [s for s in (_head(KASLR / "vmcore.flat"),) if s] + _kept("flattened")


# -- one stored page, each compression method ------------------------------------------------

_METHODS = (0, 1, 2, 4, 0x20)            # raw, zlib, lzo, snappy, zstd flag bits


def run_kdump_page(data: bytes) -> None:
    if not data:
        return
    flags = _METHODS[data[0] % len(_METHODS)]
    body = data[1:]
    desc = PageDescriptor(0, len(body), flags, 0)
    expect_pmdb_errors(lambda: decompress_page(body, desc, 4096, 0x1000))


def seeds_kdump_page() -> list[bytes]:
    import zlib

    import cramjam
    import lzallright
    import zstandard

    page = bytes(range(256)) * 8 + bytes(2048)
    return [b"\0" + page, b"\1" + zlib.compress(page), b"\2" + lzallright.LZOCompressor().compress(page),
            b"\3" + bytes(cramjam.snappy.compress_raw(page)), b"\4" + zstandard.compress(page)] + _kept("kdump-page")


# -- .zst dumps: decompressed into the cache -------------------------------------------------

def run_zstd(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="pmdb-fuzz-") as tmp:
        path = os.path.join(tmp, "dump.zst")
        with open(path, "wb") as f:
            f.write(data)
        expect_pmdb_errors(lambda: zst.decompressed(path, Cache(Path(tmp) / "cache", 64 << 20)))


def seeds_zstd() -> list[bytes]:
    import zstandard

    files = _elf_files()
    head = _head(files[-1], 8192) if files else bytes(8192)
    return [zstandard.compress(head), zstandard.ZstdCompressor(write_content_size=False).compress(head)] \
        + _kept("zstd")


# -- VMCOREINFO text -------------------------------------------------------------------------

def run_vmcoreinfo(data: bytes) -> None:
    def go() -> None:
        info = VmcoreInfo.parse(data)
        for key in info.raw:
            info.raw.get(key)
        _ = info.kernel_offset, info.page_size, info.crash_time, info.build_id
        from pmdb.symbols.kallsyms import KallsymsTables

        KallsymsTables.from_vmcoreinfo(info)
        from pmdb.os.linux.printk.ring import RingLayout

        RingLayout.from_vmcoreinfo(info)
    expect_pmdb_errors(go)


def seeds_vmcoreinfo() -> list[bytes]:
    texts = [p / "vmcoreinfo.txt" for p in sorted(FIXTURES.glob("linux-*"))] if FIXTURES.exists() else []
    return [t.read_bytes() for t in texts if t.exists()] + _kept("vmcoreinfo")



TARGETS = [
    FuzzTarget("elf", "ELF cores and vmcores: header, program headers, notes, NT_PRSTATUS, NT_FILE",
               run_elf, seeds_elf),
    FuzzTarget("kdump", "compressed kdump: header, sub-header, bitmaps, page descriptors, pages",
               run_kdump, seeds_kdump),
    FuzzTarget("flattened", "makedumpfile's flattened format: records rebuilt into a kdump",
               run_flattened, seeds_flattened),
    FuzzTarget("kdump-page", "one stored kdump page: raw, zlib, lzo, snappy, zstd",
               run_kdump_page, seeds_kdump_page),
    FuzzTarget("zstd", ".zst dumps decompressed into the cache", run_zstd, seeds_zstd),
    FuzzTarget("vmcoreinfo", "VMCOREINFO text, its typed families and what reads it first",
               run_vmcoreinfo, seeds_vmcoreinfo),
]
