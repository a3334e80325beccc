"""The kernel's debug vmlinux: where it is, whether it is the dump's, what it adds.

pmdb needs nothing but the dump; a debug vmlinux, when one is at hand, adds the DWARF
types BTF lacks (globals' types; every type of a kernel built without BTF) and, for a
kallsyms of functions only (Debian's 686-pae), the data symbols. It is looked for among
the files named on the command line, then by release and build-id in Debian's -dbg layout
under each configured directory (pmdb.toml's debuginfo.directories: /usr/lib/debug by default). A file is used only when it is the
dump's kernel: the same GNU build-id as VMCOREINFO's BUILD-ID, or, for a dump without one,
the same ``linux_banner`` bytes; another is one warning line and is not used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pmdb.errors import FormatError, PmdbError
from pmdb.symbols.table import Symbol

if TYPE_CHECKING:
    from pmdb.types.debugfile import DebugFile

_BANNER_BYTES = 128


def candidates(release: str, build_id: str, directories: Sequence[str]) -> list[str]:
    """Paths a debug vmlinux of ``release``/``build_id`` may have, most specific first, under
    each directory (Debian's layout: boot/vmlinux-REL, lib/modules/REL/vmlinux, .build-id/)."""
    out: list[str] = []
    for top in directories:
        top = os.path.expanduser(top)
        if build_id and len(build_id) > 2:
            out.append(os.path.join(top, ".build-id", build_id[:2], f"{build_id[2:]}.debug"))
        if release:
            out += [os.path.join(top, "boot", f"vmlinux-{release}"),
                    os.path.join(top, "lib", "modules", release, "vmlinux"),
                    os.path.join(top, f"vmlinux-{release}"),
                    os.path.join(top, release, "vmlinux")]
    return list(dict.fromkeys(out))


@dataclass
class Found:
    """The dump's debug vmlinux (or None) and the one-line reasons others were not used."""

    debug: DebugFile | None = None
    warnings: list[str] = field(default_factory=list)


def find_vmlinux(*, release: str, build_id: str, named: Sequence[str], directories: Sequence[str],
                 read_memory: Callable[[int, int], bytes | None]) -> Found:
    """The first matching file: those ``named`` (a mismatch is a warning), then the search
    (files found there that differ are warnings too: a stale -dbg package)."""
    found = Found()
    paths = [*named, *(p for p in candidates(release, build_id, directories) if os.path.isfile(p))]
    if not paths:
        return found
    # pyelftools (~20 ms to import) only when there is a file to read
    from pmdb.types.debugfile import DebugFile

    for path in paths:
        try:
            debug = DebugFile(path)
        except FormatError as err:
            found.warnings.append(f"{err}: not used")
            continue
        if debug.elf.header["e_type"] == "ET_REL":
            debug.close()           # a module's debug file (.ko): pmdb.os.linux.debuginfo reads it
            continue
        problem = mismatch(debug, build_id, read_memory)
        if problem is None and not debug.has_dwarf():
            problem = "has no DWARF (.debug_info)"
        if problem is None:
            found.debug = debug
            return found
        debug.close()
        found.warnings.append(f"{path} {problem}: not used")
    return found


def mismatch(debug: DebugFile, build_id: str, read_memory: Callable[[int, int], bytes | None]) -> str | None:
    """Why ``debug`` is not the dump's kernel, or None when it is."""
    mine = debug.build_id()
    if build_id and mine:
        return None if mine == build_id.lower() else f"is build {mine}, the dump's kernel is {build_id}"
    # no build-id on one side: the banner ("Linux version ... #1 SMP Debian ...") must agree
    try:
        from pmdb.symbols.elf import read_symbols

        banner = next((s for s in read_symbols(debug.elf) if s.name == "linux_banner"), None)
        if banner is None:
            return "has no build-id and no linux_banner to compare"
        want = _file_bytes(debug, banner.addr, _BANNER_BYTES)
    except PmdbError as err:
        return f"cannot be compared with the dump ({err})"
    got = read_memory(banner.addr, len(want))
    if got is None or got.split(b"\0")[0] != want.split(b"\0")[0]:
        return "has another linux_banner than the dump's kernel"
    return None


def _file_bytes(debug: DebugFile, addr: int, size: int) -> bytes:
    """Bytes at a link-time address of the vmlinux, from the section that holds them."""
    for sec in debug.elf.iter_sections():
        start, length = sec["sh_addr"], sec["sh_size"]
        if start and start <= addr < start + length and sec.name in debug.sections:
            return debug.read(sec.name, addr - start, min(size, start + length - addr))
    raise FormatError(f"no section of the vmlinux holds {addr:#x}")


# data symbols both a kallsyms of functions only (or VMCOREINFO) and the vmlinux name
_ANCHORS = ("init_uts_ns", "swapper_pg_dir", "init_task", "prb", "vmap_area_list")


def data_symbols(debug: DebugFile, lookup: Callable[[str], int | None]) -> list[Symbol]:
    """The vmlinux's object symbols, moved by the image's load offset (KASLR): the
    difference between where ``lookup`` (kallsyms, then VMCOREINFO) puts a data symbol and
    where the vmlinux does; [] when no anchor is known to both."""
    from pmdb.symbols.elf import symbol_fields

    fields = symbol_fields(debug.elf, origin=debug.path, kinds=("object",))
    mine = {f[0]: f[1] for f in fields if f[0] in _ANCHORS}
    shift = next((loaded - mine[name] for name in _ANCHORS
                  if name in mine and (loaded := lookup(name)) is not None), None)
    if shift is None:
        return []
    return [Symbol(name, value + shift, size, kind, None, binding, "D" if binding == "global" else "d")
            for name, value, size, kind, binding, _ in fields]
