"""Dump formats: QEMU's dump-guest-memory (ELF, kdump-*) and makedumpfile's (kdump, flattened).

QEMU 7.2 writes its kdump-* formats in makedumpfile's flattened layout (`makedumpfile -R`
rearranges them). makedumpfile 1.7.2 reads program headers at sizeof(Elf64_Ehdr) and ignores
e_phoff, while QEMU 7.2 puts its section headers there and the program headers after them, so
makedumpfile gets a copy whose program headers are moved up.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

from tests.vmlab.common import LabError, need_tool, run, say

# format name -> file name in the dump dir
FILES = {
    "elf": "vmcore.elf",                    # QEMU dump-guest-memory, paging=false
    "kdump-zlib": "vmcore.kdump-zlib",      # QEMU, flattened kdump, zlib pages
    "kdump-lzo": "vmcore.kdump-lzo",        # QEMU, flattened kdump, lzo pages
    "kdump-snappy": "vmcore.kdump-snappy",  # QEMU, flattened kdump, snappy pages
    "mdf": "vmcore.mdf",                    # makedumpfile -c -d 31: kdump-compressed, filtered
    "flat": "vmcore.flat",                  # makedumpfile -F -c -d 31: flattened
}
ALIASES = {
    "all": list(FILES),
    "kdump": ["kdump-zlib", "kdump-lzo", "kdump-snappy"],
    "qemu": ["elf", "kdump-zlib", "kdump-lzo", "kdump-snappy"],
    "makedumpfile": ["mdf", "flat"],
}
QEMU_FORMATS = ("elf", "kdump-zlib", "kdump-lzo", "kdump-snappy")


def parse_formats(text: str) -> list[str]:
    """A comma list of formats and aliases -> format names, in FILES order."""
    wanted: set[str] = set()
    for word in filter(None, text.split(",")):
        if word in ALIASES:
            wanted.update(ALIASES[word])
        elif word in FILES:
            wanted.add(word)
        else:
            raise LabError(f"unknown dump format {word!r}; known: {', '.join([*FILES, *ALIASES])}")
    return [f for f in FILES if f in wanted]


def phdrs_first(src: Path, dst: Path) -> Path:
    """src, or a copy at dst with the program headers moved to offset 64 for makedumpfile."""
    with open(src, "rb") as f:
        ehdr = bytearray(f.read(64))
        if ehdr[:4] != b"\x7fELF" or ehdr[4] != 2 or ehdr[5] != 1:
            raise LabError(f"{src} is not a little-endian ELF64 file")
        phoff = struct.unpack_from("<Q", ehdr, 32)[0]
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        if phoff == 64:
            return src
        if phnum == 0xFFFF:
            raise LabError(f"{src}: extended program-header numbering; cannot move them")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    first_data = min(struct.unpack_from("<Q", table, i * phentsize + 8)[0] for i in range(phnum))
    if 64 + len(table) > first_data:
        raise LabError(f"{src}: no room to move the program headers before the data")
    shutil.copyfile(src, dst)
    struct.pack_into("<Q", ehdr, 32, 64)        # e_phoff
    struct.pack_into("<Q", ehdr, 40, 0)         # e_shoff: the section headers are overwritten
    struct.pack_into("<HHH", ehdr, 58, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
    with open(dst, "r+b") as f:
        f.write(ehdr)
        f.write(table)
    return dst


def makedumpfile(elf: Path, out: Path, formats: list[str], log: Path,
                 argv: list[str] | None = None) -> list[str]:
    """The makedumpfile formats asked for, made from the QEMU ELF; the names made.

    argv runs another makedumpfile (a foreign arch's, under qemu-user); the host's by default.
    """
    wanted = [f for f in ("mdf", "flat") if f in formats]
    if not wanted:
        return []
    if argv is None:
        need_tool("makedumpfile", "makedumpfile")
    mdf = argv or ["makedumpfile"]
    src = phdrs_first(elf, out / "makedumpfile-input.elf")
    try:
        if "mdf" in wanted:
            say("makedumpfile -c -d 31")
            run([*mdf, "-c", "-d", "31", src, out / FILES["mdf"]], "makedumpfile -c -d 31", log)
        if "flat" in wanted:
            say("makedumpfile -F -c -d 31")
            with open(out / FILES["flat"], "wb") as flat, open(log, "ab") as err:
                rc = subprocess.run([*mdf, "-F", "-c", "-d", "31", str(src)],
                                    stdout=flat, stderr=err).returncode
            if rc != 0:
                raise LabError(f"makedumpfile -F failed (exit {rc}); see {log}")
    finally:
        if src != elf:
            src.unlink(missing_ok=True)
    return wanted
