"""Every vmcore format gives the same physical pages as the QEMU ELF dump they came from.

Oracle: the ELF file's own bytes, located with pyelftools (p_paddr, p_offset),
not through pmdb. The fixtures are real dumps of one crash (see the fixture
README); the lzo variant is made at test time by Debian's makedumpfile from the
ELF, and the snappy and zstd variants (Debian builds makedumpfile without them)
by recompressing the pages of makedumpfile's own zlib dump in its layout.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pmdb.cache import Cache
from pmdb.dumps import zst
from pmdb.dumps.base import FileSource
from pmdb.dumps.flattened import FlattenedSource
from pmdb.dumps.kdump import KdumpFile
from pmdb.dumps.vmcore import sniff_vmcore
from pmdb.dumps.vmcore_elf import VmcoreElf
from pmdb.errors import FaultError
from pmdb.progress import LineProgress
from tests.conftest import FIXTURES, need_fixture

KASLR = FIXTURES / "linux-6.1-x86_64"
PAGE = 4096
RAM_END = 0xC000000            # 192 MiB guest (README)
KERNEL_IMAGE = 0x5200000       # where the KASLR kernel image sits in physical memory (README)
SNAPPY, ZSTD = 0x4, 0x20


class ElfOracle:
    """Physical pages straight from the ELF file: pyelftools' program headers plus file reads."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "rb")
        elf = ELFFile(self.file)
        self.segments = [(s["p_paddr"], s["p_offset"], s["p_filesz"]) for s in elf.iter_segments()
                         if s["p_type"] == "PT_LOAD"]

    def page(self, addr: int) -> bytes:
        for paddr, offset, size in self.segments:
            if paddr <= addr < paddr + size:
                self.file.seek(offset + addr - paddr)
                return self.file.read(PAGE)
        raise KeyError(hex(addr))

    def find(self, needle: bytes) -> int:
        """Physical address of the first occurrence of needle in RAM."""
        import mmap

        with mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ) as m:
            paddr, offset, size = self.segments[0]
            at = m.find(needle, offset, offset + size)
        assert at >= 0
        return paddr + at - offset


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pmdb-vmcore-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def elf_path(workdir: Path) -> Path:
    """vmcore.elf, decompressed by pmdb's own .zst cache into a throwaway directory."""
    return Path(zst.decompressed(str(need_fixture(KASLR / "vmcore.elf.zst")), Cache(workdir)))


@pytest.fixture(scope="module")
def oracle(elf_path: Path) -> ElfOracle:
    return ElfOracle(elf_path)


def phdrs_after_header(src: Path, dst: Path) -> None:
    """A copy of a QEMU ELF with the program headers moved to offset 64 and no sections.

    makedumpfile 1.7.2 ignores e_phoff (it fails with "Can't get the number of
    PT_LOAD" on QEMU's layout, where section headers come first).
    """
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        ehdr = bytearray(f.read(64))
        phoff = struct.unpack_from("<Q", ehdr, 32)[0]
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        first_data = min(struct.unpack_from("<Q", table, i * phentsize + 8)[0] for i in range(phnum))
        assert 64 + len(table) <= first_data
        struct.pack_into("<QQ", ehdr, 32, 64, 0)          # e_phoff, e_shoff
        struct.pack_into("<HHH", ehdr, 58, 0, 0, 0)       # e_shentsize, e_shnum, e_shstrndx
        f.seek(0)
        f.write(ehdr + table)


def makedumpfile(elf_path: Path, workdir: Path, *flags: str) -> Path:
    if shutil.which("makedumpfile") is None:
        if os.environ.get("PMDB_REQUIRE_FIXTURES") == "1":
            pytest.fail("makedumpfile is required (apt-get install makedumpfile)")
        pytest.skip("makedumpfile is not installed")
    moved = workdir / "vmcore.phdrs-moved"
    if not moved.exists():
        phdrs_after_header(elf_path, moved)
    out = workdir / ("dump" + "".join(flags).replace(" ", ""))
    if not out.exists():
        subprocess.run(["makedumpfile", *flags, "-d", "31", str(moved), str(out)], check=True,
                       capture_output=True, timeout=300)
    return out


def recompress(src: Path, dst: Path, flag: int) -> None:
    """makedumpfile's zlib dump with every page stored snappy- or zstd-compressed instead.

    Pages that do not shrink are stored raw, as makedumpfile does.
    """
    import cramjam
    import zstandard

    pack = {SNAPPY: lambda b: bytes(cramjam.snappy.compress_raw(b)),
            ZSTD: lambda b: zstandard.ZstdCompressor(level=1).compress(b)}[flag]
    dump = KdumpFile(FileSource(str(src)))
    pfns = [p for a, b in dump.ranges() for p in range(a // PAGE, b // PAGE)]
    with open(src, "rb") as f:
        head = bytearray(f.read(dump.desc_offset))
        struct.pack_into("<I", head, 424, flag)           # disk_dump_header.status
        data_at = dump.desc_offset + 24 * len(pfns)
        descs, blobs = bytearray(), bytearray()
        for pfn in pfns:
            d = dump.descriptor(pfn)
            f.seek(d.offset)
            stored = f.read(d.size)
            page = zlib.decompress(stored) if d.flags & 1 else stored
            packed = pack(page)
            body, flags = (packed, flag) if len(packed) < PAGE else (page, 0)
            descs += struct.pack("<qIIQ", data_at + len(blobs), len(body), flags, d.page_flags)
            blobs += body
    dst.write_bytes(bytes(head + descs + blobs))


@pytest.fixture(scope="module")
def dumps(elf_path: Path, workdir: Path) -> dict[str, KdumpFile | VmcoreElf]:
    """Every format of the one crash, as pmdb opens it."""
    out: dict[str, KdumpFile | VmcoreElf] = {}
    for name in ("dump.202611221942", "vmcore.flat", "vmcore.kdump-zlib"):
        d = sniff_vmcore(str(need_fixture(KASLR / name)))
        assert isinstance(d, KdumpFile)
        out[name] = d
    elf = sniff_vmcore(str(elf_path))
    assert isinstance(elf, VmcoreElf)
    out["vmcore.elf"] = elf
    return out


@pytest.fixture(scope="module")
def variants(elf_path: Path, workdir: Path) -> dict[str, KdumpFile]:
    """lzo from makedumpfile -l; snappy and zstd recompressed from makedumpfile -c."""
    lzo_dump = makedumpfile(elf_path, workdir, "-l")
    out = {"lzo": KdumpFile(FileSource(str(lzo_dump)))}
    zlib_dump = need_fixture(KASLR / "dump.202611221942")
    for name, flag in (("snappy", SNAPPY), ("zstd", ZSTD)):
        path = workdir / f"dump.{name}"
        recompress(zlib_dump, path, flag)
        out[name] = KdumpFile(FileSource(str(path)))
    return out


def sample_addrs(dump: KdumpFile, oracle: ElfOracle, n: int = 300) -> list[int]:
    """The VMCOREINFO page, the first kernel-image pages, and random pages the dump holds."""
    addrs = [oracle.find(b"OSRELEASE=6.1.0-56-amd64\nBUILD-ID=") & ~(PAGE - 1)]
    addrs += [KERNEL_IMAGE + i * PAGE for i in range(8)]
    pfns = [p for a, b in dump.ranges() for p in range(a // PAGE, b // PAGE)]
    addrs += [p * PAGE for p in random.Random(7).sample(pfns, n)]
    return addrs


@pytest.mark.parametrize("name", ["dump.202611221942", "vmcore.flat", "vmcore.kdump-zlib", "vmcore.elf"])
def test_same_pages_as_the_elf(dumps: dict, oracle: ElfOracle, name: str) -> None:
    space = dumps[name].space()
    for addr in sample_addrs(dumps["dump.202611221942"], oracle):
        assert space.read(addr, PAGE) == oracle.page(addr), f"{name}: page {addr:#x}"
    # an unaligned read across a page boundary
    addr = KERNEL_IMAGE + PAGE - 5
    assert space.read(addr, 10) == oracle.page(addr - addr % PAGE)[-5:] + oracle.page(addr + 5)[:5]


@pytest.mark.parametrize("method", ["lzo", "snappy", "zstd"])
def test_compression_variants(variants: dict, dumps: dict, oracle: ElfOracle, method: str) -> None:
    dump = variants[method]
    assert dump.ranges() == dumps["dump.202611221942"].ranges()
    methods = {dump.descriptor(a // PAGE).method for a in sample_addrs(dump, oracle, 50)}
    assert method in methods
    space = dump.space()
    for addr in sample_addrs(dump, oracle):
        assert space.read(addr, PAGE) == oracle.page(addr), f"{method}: page {addr:#x}"


def test_every_dumped_page_of_the_kdump(dumps: dict, oracle: ElfOracle) -> None:
    dump = dumps["dump.202611221942"]
    space = dump.space()
    ranges = dump.ranges()
    assert sum(b - a for a, b in ranges) // PAGE > 10000
    for a, b in ranges:
        for addr in range(a, b, PAGE):
            assert space.read(addr, PAGE) == oracle.page(addr), hex(addr)


def _elf_bytes(oracle: ElfOracle, addr: int, n: int) -> bytes:
    first = addr - addr % PAGE
    data = b"".join(oracle.page(a) for a in range(first, addr + n, PAGE))
    return data[addr - first:addr - first + n]


@pytest.mark.parametrize("name", ["dump.202611221942", "vmcore.flat", "vmcore.kdump-zlib",
                                  "lzo", "snappy", "zstd"])
def test_bulk_reads_of_whole_runs(dumps: dict, variants: dict, oracle: ElfOracle, name: str) -> None:
    """A long read (a scan of memory: kdump.pages decompresses its pages in one pass) gives
    the ELF's bytes over every run of dumped pages, from unaligned starts, in every format;
    and it leaves the page cache as it was."""
    dump = dumps.get(name) or variants[name]
    space = dump.space()
    bulk = 0
    for a, b in dump.ranges():
        at = a + 24 if b - a > 64 * 1024 else a
        while at < b:
            n = min(300 * 1024 + 5, b - at)
            cached = list(dump._cache)
            assert space.read(at, n) == _elf_bytes(oracle, at, n), f"{name}: {at:#x}+{n:#x}"
            if n >= 64 * 1024:
                bulk += 1
                assert list(dump._cache) == cached
            at += n
    assert bulk > 50


def test_bulk_read_over_a_left_out_page(dumps: dict, oracle: ElfOracle) -> None:
    """A long read that reaches a page makedumpfile left out faults at that page, as a
    page-by-page read does; the pages before it read alone."""
    dump = dumps["dump.202611221942"]
    space = dump.space()
    a, b = next(r for r in dump.ranges() if r[1] - r[0] >= 128 * 1024)
    start = b - 100 * 1024
    err = pytest.raises(FaultError, space.read, start, 200 * 1024).value
    assert err.address == b and "excluded" in err.reason
    assert dump.pages(start // PAGE, 25) is not None and dump.pages(start // PAGE, 26) is None
    assert space.read(start, 100 * 1024) == _elf_bytes(oracle, start, 100 * 1024)


def test_rom_beyond_ram(dumps: dict, oracle: ElfOracle) -> None:
    """QEMU's kdump keeps the BIOS ROM at 0xfffc0000; makedumpfile's max_mapnr stops below it."""
    rom = 0xFFFC0000
    assert dumps["vmcore.kdump-zlib"].space().read(rom, PAGE) == oracle.page(rom)
    assert dumps["vmcore.elf"].space().read(rom, PAGE) == oracle.page(rom)
    with pytest.raises(FaultError, match="beyond the dump's physical memory"):
        dumps["dump.202611221942"].space().read(rom, 8)


@pytest.mark.parametrize("name", ["dump.202611221942", "vmcore.flat", "vmcore.kdump-zlib", "vmcore.elf"])
def test_vmcoreinfo_and_notes(dumps: dict, name: str) -> None:
    dump = dumps[name]
    assert dump.vmcoreinfo == (KASLR / "vmcoreinfo.txt").read_text()
    # README: 2 x CORE/NT_PRSTATUS (CPU 0, CPU 1), 2 x QEMU, then VMCOREINFO
    assert [(n.name, n.type) for n in dump.notes] == [("CORE", 1), ("CORE", 1), ("QEMU", 0), ("QEMU", 0),
                                                      ("VMCOREINFO", 0)]
    assert dump.arch.name == "x86_64" and dump.kind == "vmcore"


def test_kdump_headers(dumps: dict) -> None:
    dump = dumps["dump.202611221942"]
    assert dump.utsname["release"] == "6.1.0-56-amd64"
    assert dump.utsname["version"] == "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"
    assert dump.header.nr_cpus == 2
    assert dump.dump_level == 31
    assert dump.sub.phys_base == -0x4E00000          # NUMBER(phys_base)=-81788928
    assert dumps["vmcore.kdump-zlib"].utsname["release"] == ""   # QEMU leaves utsname empty


def test_excluded_pages(dumps: dict, oracle: ElfOracle) -> None:
    """RAM pages the -d 31 dump left out fault as excluded, though the ELF has their bytes."""
    dump = dumps["dump.202611221942"]
    space = dump.space()
    dumped = {p for a, b in dump.ranges() for p in range(a // PAGE, b // PAGE)}
    left_out = [p * PAGE for p in range(RAM_END // PAGE) if p not in dumped]
    assert len(left_out) > 10000
    assert sum(oracle.page(a) != bytes(PAGE) for a in left_out[::20]) > 100   # real data left out
    for addr in left_out[::37]:
        with pytest.raises(FaultError, match=r"excluded from the dump \(makedumpfile dump level 31"):
            space.read(addr + 8, 8)
        assert not space.readable(addr)
    err = pytest.raises(FaultError, space.read, left_out[0] - 8, 16).value
    assert err.address == left_out[0]        # the fault names the first missing byte
    # zero pages that makedumpfile keeps share one stored page
    zero = [a for a in sorted(dumped)[:200] if oracle.page(a * PAGE) == bytes(PAGE)]
    assert zero and all(space.read(a * PAGE, PAGE) == bytes(PAGE) for a in zero)


def test_hole_and_end(dumps: dict) -> None:
    space = dumps["dump.202611221942"].space()
    with pytest.raises(FaultError, match="no memory at this physical address"):
        space.read(RAM_END, 8)        # below max_mapnr (0x10000 pfns) but not RAM
    with pytest.raises(FaultError, match="not in the dump"):
        dumps["vmcore.elf"].space().read(RAM_END, 8)


@pytest.mark.parametrize("folder", ["linux-6.1-x86_64", "linux-6.1-x86_64-nokaslr", "linux-6.1-x86_64-slub"])
def test_utsname_in_memory(folder: str) -> None:
    """init_uts_ns, found by VMCOREINFO's symbol and phys_base, holds the header's utsname."""
    path = next((FIXTURES / folder).glob("dump.*"), None) if (FIXTURES / folder).exists() else None
    dump = sniff_vmcore(str(need_fixture(path or FIXTURES / folder / "dump.*")))
    assert isinstance(dump, KdumpFile)
    info = dict(line.split("=", 1) for line in (FIXTURES / folder / "vmcoreinfo.txt").read_text().split("\n")
                if "=" in line)
    assert dump.vmcoreinfo.split("\n") == (FIXTURES / folder / "vmcoreinfo.txt").read_text().split("\n")
    phys = int(info["SYMBOL(init_uts_ns)"], 16) - 0xFFFFFFFF80000000 + int(info["NUMBER(phys_base)"])
    name = dump.space().read(phys + int(info["OFFSET(uts_namespace.name)"]), 6 * 65)
    fields = [name[i * 65:(i + 1) * 65].split(b"\0", 1)[0].decode() for i in range(6)]
    assert fields[0] == "Linux"
    assert fields[2] == info["OSRELEASE"] == dump.utsname["release"]
    assert fields[3] == dump.utsname["version"]


def test_flattened_index_matches_rearranged(dumps: dict, workdir: Path) -> None:
    """makedumpfile -R (the format's own tool) rebuilds the file that FlattenedSource reads in place."""
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed")
    flat = need_fixture(KASLR / "vmcore.flat")
    rebuilt = workdir / "vmcore.rearranged"
    with open(flat, "rb") as f:
        subprocess.run(["makedumpfile", "-R", str(rebuilt)], stdin=f, check=True, capture_output=True,
                       timeout=120)
    src = FlattenedSource(str(flat))
    assert src.size == rebuilt.stat().st_size
    with open(rebuilt, "rb") as f:
        for offset in [0, 4096, 4096 * 3 + 17] + random.Random(3).sample(range(src.size - 5000), 200):
            f.seek(offset)
            assert src.read_at(offset, 5000 if offset + 5000 <= src.size else 1) == f.read(
                5000 if offset + 5000 <= src.size else 1)


def test_open_is_fast() -> None:
    """Opening must not expand the bitmaps or walk the descriptors."""
    path = str(need_fixture(KASLR / "dump.202611221942"))
    best = min(_timed_open(path) for _ in range(5))
    assert best < 0.1, f"opening took {best:.3f} s"


def _timed_open(path: str) -> float:
    t = time.perf_counter()
    dump = sniff_vmcore(path)
    assert dump is not None
    dump.space().read(KERNEL_IMAGE, 8)
    elapsed = time.perf_counter() - t
    dump.close()
    return elapsed


def test_zst_is_decompressed_once(dumps: dict, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .zst dump is streamed into the cache once, with one line saying so; later opens reuse it."""
    import zstandard

    monkeypatch.setenv("PMDB_CACHE_DIR", str(workdir / "cache"))
    packed = workdir / "dump.202611221942.zst"
    with open(need_fixture(KASLR / "dump.202611221942"), "rb") as f, open(packed, "wb") as out:
        zstandard.ZstdCompressor(level=1, write_content_size=True).copy_stream(f, out)
    said = io.StringIO()
    first = sniff_vmcore(str(packed), progress=LineProgress(said))
    assert isinstance(first, KdumpFile)
    lines = said.getvalue().splitlines()
    assert len(lines) == 1 and "decompressing dump.202611221942.zst" in lines[0]
    assert Path(first.path).parent == workdir / "cache" / "dumps"
    again = sniff_vmcore(str(packed), progress=LineProgress(said))
    assert said.getvalue().count("\n") == 1 and isinstance(again, KdumpFile) and again.path == first.path
    addr = KERNEL_IMAGE
    assert again.space().read(addr, PAGE) == dumps["dump.202611221942"].space().read(addr, PAGE)
