"""Test plumbing for the Linux vmcore fixtures: a physical space, VMCOREINFO, kallsyms, layout.

Opens the dumps with pmdb's own readers when they handle the file; until
then, the QEMU ELF dump is read by a tiny stand-in (PT_LOADs by p_paddr,
honouring e_phoff, which QEMU puts at 192).
"""

from __future__ import annotations

import lzma
import struct
from dataclasses import dataclass
from pathlib import Path

from pmdb.dumps.base import FileSource
from pmdb.memory.space import AddressSpace, Segment, SegmentedSpace
from pmdb.memory.x86_64 import KernelSpace
from pmdb.os.linux.kmem_layout import KernelLayout, attach_layout, kernel_space
from pmdb.os.linux.vmcoreinfo import VmcoreInfo
from pmdb.symbols.kallsyms import KallsymsTables, read_kallsyms
from pmdb.symbols.table import Symbol
from tests.conftest import FIXTURES, need_fixture

KASLR = FIXTURES / "linux-6.1-x86_64"
NOKASLR = FIXTURES / "linux-6.1-x86_64-nokaslr"


@dataclass
class Kernel:
    info: VmcoreInfo
    phys: AddressSpace
    space: KernelSpace
    symbols: list[Symbol]
    by_name: dict[str, int]
    layout: KernelLayout


def _elf_standin(path: str) -> tuple[AddressSpace, bytes | None]:
    """Physical memory and the VMCOREINFO note text of a QEMU ELF vmcore."""
    src = FileSource(path)
    hdr = src.read_at(0, 64)
    phoff, = struct.unpack_from("<Q", hdr, 32)
    phentsize, phnum = struct.unpack_from("<HH", hdr, 54)
    segs, vmcoreinfo = [], None
    for i in range(phnum):
        p_type, _f, off, _v, paddr, filesz, _m, _a = struct.unpack(
            "<IIQQQQQQ", src.read_at(phoff + i * phentsize, 56))
        if p_type == 1:
            segs.append(Segment(paddr, filesz, src, off))
        elif p_type == 4:
            vmcoreinfo = _find_note(src.read_at(off, filesz), b"VMCOREINFO") or vmcoreinfo
    return SegmentedSpace(segs), vmcoreinfo


def _find_note(blob: bytes, name: bytes) -> bytes | None:
    pos = 0
    while pos + 12 <= len(blob):
        namesz, descsz, _type = struct.unpack_from("<III", blob, pos)
        pos += 12
        owner = blob[pos:pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        desc = blob[pos:pos + descsz]
        pos += (descsz + 3) & ~3
        if owner == name:
            return desc
    return None


def _open_with_pmdb(path: str) -> tuple[AddressSpace, bytes | None] | None:
    """pmdb's own reader, when it already handles vmcores; None otherwise."""
    try:
        from pmdb.dumps.detect import open_dump
        dump = open_dump(path)
    except Exception:  # noqa: BLE001 - the readers are still landing: fall back
        return None
    if getattr(dump, "kind", "") != "vmcore":
        return None
    notes = [n.desc for n in dump.notes if n.name == "VMCOREINFO"]
    return dump.space(), (notes[0] if notes else None)


def elf_vmcore(folder: Path) -> str:
    """The decompressed vmcore.elf of a fixture folder (cached across runs)."""
    from pmdb.dumps.zst import decompressed
    return decompressed(str(need_fixture(folder / "vmcore.elf.zst")), notify=None)


def open_phys(path: str) -> tuple[AddressSpace, bytes | None]:
    opened = _open_with_pmdb(path)
    if opened is not None:
        return opened
    return _elf_standin(path)


def open_kernel(path: str, vmcoreinfo_txt: Path) -> Kernel:
    """Everything built from the dump; VMCOREINFO from the dump, else the fixture's copy."""
    phys, note = open_phys(path)
    info = VmcoreInfo.parse(note if note is not None else vmcoreinfo_txt.read_text())
    space = kernel_space(phys, info)
    symbols = read_kallsyms(space, KallsymsTables.from_vmcoreinfo(info))
    by_name: dict[str, int] = {}
    for s in symbols:
        by_name.setdefault(s.name, s.addr)
    layout = attach_layout(space, info, by_name.get)
    return Kernel(info, phys, space, symbols, by_name, layout)


def system_map() -> list[tuple[int, str, str]]:
    """(address before KASLR, type letter, name) for every line of the real System.map."""
    path = need_fixture(KASLR / "System.map-6.1.0-56-amd64.xz")
    out = []
    with lzma.open(path, "rt") as f:
        for line in f:
            addr, letter, name = line.split()[:3]
            out.append((int(addr, 16), letter, name))
    return out


def crash_section(folder: Path, command: str) -> list[str]:
    """The lines crash printed for one command in crash-oracle.txt."""
    lines = need_fixture(folder / "crash-oracle.txt").read_text().splitlines()
    start = lines.index(f"crash> {command}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("crash> ")), len(lines))
    return lines[start:end]
