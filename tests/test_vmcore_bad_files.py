"""Broken vmcores: cut short, corrupt headers, wild page descriptors, bad compressed pages.

Each one must give one clear FormatError (the file cannot be opened) or
FaultError (one page cannot be read) line, quickly, without a huge allocation;
pages the damage does not touch must still read as in the intact dump.
"""

from __future__ import annotations

import random
import re
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pmdb.cache import Cache
from pmdb.dumps import zst
from pmdb.dumps.kdump import KdumpFile
from pmdb.dumps.vmcore import sniff_vmcore
from pmdb.dumps.vmcore_elf import VmcoreElf
from pmdb.errors import FaultError, FormatError, PmdbError
from tests.conftest import FIXTURES, need_fixture

KASLR = FIXTURES / "linux-6.1-x86_64"
PAGE = 4096
SUB = 4096          # the kdump sub-header is block 1
HDR_BLOCK_SIZE, HDR_BITMAP_BLOCKS, HDR_MAX_MAPNR = 428, 436, 440   # disk_dump_header offsets (x86_64)
SUB_SIZE_VMCOREINFO, SUB_SIZE_NOTE, SUB_MAX_MAPNR_64 = SUB + 40, SUB + 56, SUB + 96


@pytest.fixture(scope="module")
def kdump_path() -> Path:
    return need_fixture(KASLR / "dump.202611221942")


@pytest.fixture(scope="module")
def intact(kdump_path: Path) -> Iterator[KdumpFile]:
    dump = sniff_vmcore(str(kdump_path))
    assert isinstance(dump, KdumpFile)
    yield dump
    dump.close()


def one_line(err: PmdbError) -> str:
    text = str(err)
    assert "\n" not in text and text
    return text


def cut(src: Path, n: int, dst: Path) -> Path:
    with open(src, "rb") as f:
        dst.write_bytes(f.read(n))
    return dst


def patched(src: Path, dst: Path, patches: dict[int, bytes]) -> Path:
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        for offset, data in patches.items():
            f.seek(offset)
            f.write(data)
    return dst


def open_fails(path: Path, match: str) -> str:
    t = time.perf_counter()
    with pytest.raises(FormatError, match=match) as info:
        sniff_vmcore(str(path))
    assert time.perf_counter() - t < 2
    return one_line(info.value)


def dumped_pfns(dump: KdumpFile) -> list[int]:
    return [p for a, b in dump.ranges() for p in range(a // PAGE, b // PAGE)]


@pytest.mark.parametrize("n", [8, 100, 300, 460, SUB + 50, SUB + 150, 3 * PAGE])
def test_kdump_header_cut_short(kdump_path: Path, tmp_path: Path, n: int) -> None:
    open_fails(cut(kdump_path, n, tmp_path / "cut"), r"truncated")


@pytest.mark.parametrize("where", ["descriptors", "data"])
def test_kdump_pages_cut_short(kdump_path: Path, intact: KdumpFile, tmp_path: Path, where: str) -> None:
    """Cut after the bitmaps: the dump opens, early pages read, later ones fault as past the end."""
    size = intact.desc_offset + 1000 if where == "descriptors" else kdump_path.stat().st_size // 2
    dump = sniff_vmcore(str(cut(kdump_path, size, tmp_path / "cut")))
    assert isinstance(dump, KdumpFile)
    pfns = dumped_pfns(intact)
    readable = faulted = 0
    for pfn in pfns[:: max(1, len(pfns) // 300)]:
        try:
            data = dump.space().read(pfn * PAGE, PAGE)
        except FaultError as err:
            assert re.search(r"past the end of the file", one_line(err)), str(err)
            faulted += 1
        else:
            assert data == intact.space().read(pfn * PAGE, PAGE)
            readable += 1
    assert faulted > 0
    assert readable > 0 or where == "descriptors"


@pytest.mark.parametrize("field,value,match", [
    (HDR_BLOCK_SIZE, 3000, "block_size 3000"),
    (HDR_BLOCK_SIZE, 0, "block_size 0"),
    (HDR_BLOCK_SIZE, 1 << 30, "block_size"),
    (HDR_BITMAP_BLOCKS, 0xFFFFFFFE, "bitmaps end at"),
    (HDR_BITMAP_BLOCKS, 3, "bitmap_blocks 3"),
    (HDR_BITMAP_BLOCKS, 2, "max_mapnr 0x10000 needs a bitmap"),
    (SUB_MAX_MAPNR_64, 1 << 40, "max_mapnr 0x10000000000 needs a bitmap"),
    (SUB_SIZE_NOTE, 1 << 40, "notes of"),
    (SUB_SIZE_VMCOREINFO, 1 << 40, "VMCOREINFO of"),
])
def test_kdump_corrupt_header(kdump_path: Path, tmp_path: Path, field: int, value: int, match: str) -> None:
    width = 8 if field >= SUB else 4
    path = patched(kdump_path, tmp_path / "bad", {field: value.to_bytes(width, "little")})
    text = open_fails(path, match)
    assert "corrupt" in text or "truncated" in text


def _descriptor_at(dump: KdumpFile, pfn: int) -> int:
    return dump.desc_offset + dump.dumped.rank(pfn) * 24


def test_descriptor_past_the_end(kdump_path: Path, intact: KdumpFile, tmp_path: Path) -> None:
    pfns = dumped_pfns(intact)
    victim, other = pfns[500], pfns[501]
    size = kdump_path.stat().st_size
    at = _descriptor_at(intact, victim)
    dump = sniff_vmcore(str(patched(kdump_path, tmp_path / "bad", {at: struct.pack("<q", size + 100)})))
    assert isinstance(dump, KdumpFile)
    with pytest.raises(FaultError, match="past the end of the file") as info:
        dump.space().read(victim * PAGE, 8)
    assert info.value.address == victim * PAGE
    one_line(info.value)
    assert dump.space().read(other * PAGE, PAGE) == intact.space().read(other * PAGE, PAGE)


def test_descriptor_with_huge_size(kdump_path: Path, intact: KdumpFile, tmp_path: Path) -> None:
    victim = dumped_pfns(intact)[600]
    at = _descriptor_at(intact, victim) + 8
    dump = sniff_vmcore(str(patched(kdump_path, tmp_path / "bad", {at: struct.pack("<I", 0xFFFFFFF0)})))
    assert isinstance(dump, KdumpFile)
    with pytest.raises(FaultError) as info:
        dump.space().read(victim * PAGE, 8)
    assert "past the end" in one_line(info.value) or "corrupt" in str(info.value)


def test_corrupt_compressed_page(kdump_path: Path, intact: KdumpFile, tmp_path: Path) -> None:
    pfns = [p for p in dumped_pfns(intact) if intact.descriptor(p).method == "zlib"]
    victim = pfns[len(pfns) // 2]
    desc = intact.descriptor(victim)
    garbage = bytes(random.Random(1).randrange(256) for _ in range(desc.size))
    dump = sniff_vmcore(str(patched(kdump_path, tmp_path / "bad", {desc.offset: garbage})))
    assert isinstance(dump, KdumpFile)
    with pytest.raises(FaultError, match="corrupt zlib data") as info:
        dump.space().read(victim * PAGE + 16, 8)
    one_line(info.value)
    neighbour = pfns[len(pfns) // 2 + 1]
    assert dump.space().read(neighbour * PAGE, PAGE) == intact.space().read(neighbour * PAGE, PAGE)


def test_libdeflate_and_zlib_inflate_pages_alike(intact: KdumpFile, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast inflater (libdeflate, where its wheel is) gives zlib's bytes for every kind of
    read: single pages, runs of pages, and a page read after the fast one is taken away."""
    import zlib

    from pmdb.dumps import kdump_pages

    assert kdump_pages._libdeflate is not None, "the deflate wheel is a dependency on this machine"
    pfns = [p for p in dumped_pfns(intact) if intact.descriptor(p).method == "zlib"][::37][:300]
    assert len(pfns) >= 100
    for pfn in pfns:
        desc = intact.descriptor(pfn)
        raw = intact.src.read_at(desc.offset, desc.size)
        assert kdump_pages._inflate(raw, PAGE) == zlib.decompress(raw)
    fast = [intact.space().read(p * PAGE, PAGE) for p in pfns]
    runs = intact.space().read(pfns[0] * PAGE, 64 * PAGE)
    monkeypatch.setattr(kdump_pages, "_libdeflate", None)
    slow_dump = KdumpFile(intact.src)
    assert [slow_dump.space().read(p * PAGE, PAGE) for p in pfns] == fast
    assert slow_dump.space().read(pfns[0] * PAGE, 64 * PAGE) == runs


@pytest.fixture(scope="module")
def flat_path() -> Path:
    return need_fixture(KASLR / "vmcore.flat")


@pytest.mark.parametrize("record", [(0, 1 << 62), (0, -5), (-7, 4096), (1 << 60, 16)])
def test_flattened_record_corrupt(flat_path: Path, tmp_path: Path, record: tuple[int, int]) -> None:
    path = patched(flat_path, tmp_path / "bad", {4096: struct.pack(">qq", *record)})
    open_fails(path, "corrupt flattened record at file offset 0x1000")


def test_flattened_header_cut_short(flat_path: Path, tmp_path: Path) -> None:
    open_fails(cut(flat_path, 100, tmp_path / "cut"), "truncated flattened file")


def test_flattened_cut_in_half(flat_path: Path, intact: KdumpFile, tmp_path: Path) -> None:
    """A flattened dump cut short (disk full) keeps what arrived, like makedumpfile -R."""
    dump = sniff_vmcore(str(cut(flat_path, flat_path.stat().st_size // 2, tmp_path / "cut")))
    assert isinstance(dump, KdumpFile) and dump.src.truncated  # type: ignore[attr-defined]
    pfns = dumped_pfns(intact)
    results = []
    for pfn in pfns[:: len(pfns) // 200]:
        try:
            results.append(dump.space().read(pfn * PAGE, PAGE) == intact.space().read(pfn * PAGE, PAGE))
        except FaultError as err:
            assert "past the end" in one_line(err) or "never written" in str(err), str(err)
            results.append(None)
    assert all(r is not False for r in results)
    assert True in results and None in results


@pytest.fixture(scope="module")
def elf_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 8 MiB of vmcore.elf, streamed out of the .zst (never the whole file)."""
    import zstandard

    out = tmp_path_factory.mktemp("elf") / "vmcore.elf.head"
    with open(need_fixture(KASLR / "vmcore.elf.zst"), "rb") as f:
        out.write_bytes(zstandard.ZstdDecompressor().stream_reader(f).read(8 << 20))
    return out


def test_elf_vmcore_truncated(elf_head: Path, intact: KdumpFile) -> None:
    dump = sniff_vmcore(str(elf_head))
    assert isinstance(dump, VmcoreElf) and dump.truncated
    assert dump.vmcoreinfo == (KASLR / "vmcoreinfo.txt").read_text()
    low = dumped_pfns(intact)[5] * PAGE
    assert low < 7 << 20
    assert dump.space().read(low, PAGE) == intact.space().read(low, PAGE)
    with pytest.raises(FaultError, match="truncated") as info:
        dump.space().read(0x5200000, 8)
    one_line(info.value)


def test_elf_vmcore_cut_in_notes(elf_head: Path, tmp_path: Path) -> None:
    path = cut(elf_head, 2000, tmp_path / "cut")
    with pytest.raises(FormatError) as info:
        dump = sniff_vmcore(str(path))
        if dump is None:      # a core whose notes are gone is no longer recognisable as a vmcore
            raise FormatError("not a vmcore")
    one_line(info.value)


def test_zst_truncated_and_corrupt(tmp_path: Path) -> None:
    src = need_fixture(KASLR / "vmcore.elf.zst")
    trunc = cut(src, 1 << 20, tmp_path / "trunc.zst")
    with pytest.raises(FormatError, match="truncated") as info:
        zst.decompressed(str(trunc), Cache(tmp_path / "cache"))
    one_line(info.value)
    bad = tmp_path / "bad.zst"
    bad.write_bytes(zst.ZSTD_MAGIC + bytes(random.Random(2).randrange(256) for _ in range(4000)))
    with pytest.raises(FormatError, match="corrupt or truncated zstd data"):
        zst.decompressed(str(bad), Cache(tmp_path / "cache"))
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]   # no partial file left


def test_not_a_vmcore(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    text = tmp_path / "text"
    text.write_bytes(b"hello world\n" * 100)
    assert sniff_vmcore(str(empty)) is None
    assert sniff_vmcore(str(text)) is None


def _renamed_notes(src: Path, dst: Path, *owners: bytes) -> Path:
    """A copy whose notes of these owners have one letter of their name changed."""
    data = bytearray(src.read_bytes())
    for owner in owners:
        at = data.find(owner + b"\0")
        while 0 <= at < 0x10000:
            data[at + 1] ^= 0x20
            at = data.find(owner + b"\0", at + 1)
    dst.write_bytes(data)
    return dst


def test_elf_vmcore_with_damaged_notes_is_not_a_user_core(elf_head: Path, tmp_path: Path) -> None:
    """A vmcore whose VMCOREINFO (and QEMU) notes are damaged used to open as a user core,
    every kernel dcmd then failing: it is now named a kernel dump with a damaged note."""
    from pmdb.config import Config
    from pmdb.opener import open_target

    both = _renamed_notes(elf_head, tmp_path / "both", b"VMCOREINFO", b"QEMU")
    with pytest.raises(FormatError) as info:
        open_target(str(both), config=Config())
    assert one_line(info.value).startswith("both: looks like a kernel dump") and "VMCOREINFO" in str(info.value)
    only = _renamed_notes(elf_head, tmp_path / "only", b"VMCOREINFO")
    with pytest.raises(FormatError, match=r"^only: the dump has no VMCOREINFO"):
        open_target(str(only), config=Config())


def test_elf_vmcore_unknown_machine_names_the_file(elf_head: Path, tmp_path: Path) -> None:
    from pmdb.config import Config
    from pmdb.opener import open_target

    path = patched(elf_head, tmp_path / "machine", {0x12: struct.pack("<H", 0x1234)})
    with pytest.raises(FormatError, match=r"^machine: unsupported ELF machine 4660"):
        open_target(str(path), config=Config())
