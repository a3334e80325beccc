"""Test plumbing for the Linux vmcore fixtures: a physical space, VMCOREINFO, kallsyms, layout.

The dumps are opened by pmdb's own readers; everything else is rebuilt
from the dump alone (VMCOREINFO, page tables, kallsyms).
"""

from __future__ import annotations

import lzma
from dataclasses import dataclass
from pathlib import Path

import pytest

from pmdb.dumps.detect import open_dump
from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.memory.space import AddressSpace
from pmdb.memory.x86_64 import KernelSpace
from pmdb.os.linux.arch.x86_64.layout import KernelLayout
from pmdb.os.linux.mm.kernel_memory import KernelMemory, load_kernel_memory
from pmdb.symbols.table import Symbol
from tests.conftest import FIXTURES, need_fixture

KASLR = FIXTURES / "linux-6.1-x86_64"
NOKASLR = FIXTURES / "linux-6.1-x86_64-nokaslr"

# facts from each folder's README.md
README = {
    KASLR: {"page_offset_base": 0xFFFF8BE100000000, "vmalloc_base": 0xFFFFD303C0000000,
            "vmemmap_base": 0xFFFFF5C140000000, "kernel_offset": 0x9000000, "phys_base": -0x4E00000,
            "panic_task": 0xFFFF8BE102A71840, "crashdrv": 0xFFFFFFFFC023B000},
    NOKASLR: {"page_offset_base": 0xFFFF888000000000, "vmalloc_base": 0xFFFFC90000000000,
              "vmemmap_base": 0xFFFFEA0000000000, "kernel_offset": 0, "phys_base": 0,
              "panic_task": 0xFFFF8880062AB080, "crashdrv": 0xFFFFFFFFC0207000},
}


@dataclass
class Kernel:
    km: KernelMemory
    info: VmcoreInfo
    phys: AddressSpace
    space: KernelSpace
    symbols: list[Symbol]
    by_name: dict[str, int]
    layout: KernelLayout


def open_kernel(path: str | Path) -> Kernel:
    """Everything built from the dump alone, by pmdb's own readers."""
    dump = open_dump(str(path))
    assert dump.kind == "vmcore", path
    km = load_kernel_memory(dump.space(), dump.vmcoreinfo)  # type: ignore[attr-defined]
    symbols = list(km.symbols)
    by_name: dict[str, int] = {}
    for s in symbols:
        by_name.setdefault(s.name, s.addr)
    return Kernel(km, km.info, km.space.phys, km.space, symbols, by_name, km.layout)


def kaslr_elf() -> Path:
    """The QEMU ELF dump (pmdb opens the .zst through its cache)."""
    return need_fixture(KASLR / "vmcore.elf.zst")


def every_dump() -> list[Path]:
    """Every dump file of both folders: ELF, QEMU kdump (flattened), -c -d31, -F, and nokaslr."""
    names = [KASLR / n for n in ("vmcore.elf.zst", "vmcore.kdump-zlib", "dump.202611221942", "vmcore.flat")]
    return names + [NOKASLR / "dump.202611221946"]


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
    """The lines crash printed for the first command starting with ``command`` in crash-oracle.txt."""
    return crash_sections(folder, command)[0]


def crash_sections(folder: Path, prefix: str) -> list[list[str]]:
    """The output of every command starting with ``prefix``, in order."""
    lines = need_fixture(folder / "crash-oracle.txt").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("crash> ")] + [len(lines)]
    return [lines[a + 1:b] for a, b in zip(starts, starts[1:], strict=False)
            if lines[a].startswith(f"crash> {prefix}")]


# Module-scoped fixtures for the kernel-memory tests (tests/conftest.py registers this module).
@pytest.fixture(scope="module")
def kernel() -> Kernel:
    """The KASLR fixture's ELF dump, opened once per test module."""
    return open_kernel(kaslr_elf())


@pytest.fixture(scope="module", params=every_dump(), ids=lambda p: f"{p.parent.name}/{p.name}")
def any_kernel(request: pytest.FixtureRequest) -> tuple[Kernel, Path]:
    """Each dump file of the fixture folders, with the folder its README and oracles are in."""
    from tests.conftest import need_fixture

    return open_kernel(need_fixture(request.param)), request.param.parent
