"""The executable and shared libraries of a process, found on disk and placed at their load bias.

A core's NT_FILE note says which file each mapping came from; load_objects
groups those mappings per file, finds each file (finder.find_file), checks its
build-id against the copy of its ELF header kept in the core, and computes the
load bias. Problems become warnings, never errors: a core is still worth
reading without its libraries.

An object stripped of its symbols may have a separate debug file (found by build-id or
.gnu_debuglink: finder.find_debug_file). Its symbols and DWARF come from that file; its CFI
stays the loaded object's (a debug file's .eh_frame holds no bytes), with the debug file's
.debug_frame only for an object that has no CFI of its own.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from pmdb.arch import Arch
from pmdb.errors import FaultError, FormatError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.dwarfnames import FunctionNames
from pmdb.symbols.elf import read_symbols
from pmdb.symbols.finder import (
    build_id_in_memory,
    build_id_of_file,
    find_debug_file,
    find_file,
    is_debug_only,
)
from pmdb.symbols.plt import plt_symbols
from pmdb.symbols.table import Symbol, SymbolTable
from pmdb.threads import Mapping
from pmdb.types.dwarf import DwarfTypes

if TYPE_CHECKING:
    from pmdb.types.model import TypeSource

_FOREIGN = (ELFError, OSError, ValueError, struct.error, KeyError, AssertionError)


class ObjectFile:
    """One ELF file mapped into the process."""

    def __init__(self, path: str, *, bias: int = 0, start: int = 0, end: int = 0,
                 is_main: bool = False, mappings: Sequence[Mapping] = (), name: str | None = None,
                 image: bytes | None = None, debug_path: str | None = None) -> None:
        self.path = path
        self.debug_path = debug_path  # the separate debug file (symbols, DWARF), when found
        self.image = image        # the file's bytes when it lives only in memory (the vDSO)
        self.name = name or os.path.basename(path)
        self.bias = bias
        self.start = start
        self.end = end
        self.is_main = is_main
        self.mappings = list(mappings)
        self._stream: IO[bytes] | None = None
        self._elf: ELFFile | None = None
        self._debug: tuple[ELFFile, IO[bytes]] | None = None
        self._names: FunctionNames | None = None
        self._symbols: list[Symbol] | None = None

    def __repr__(self) -> str:
        return f"ObjectFile({self.name!r}, bias={self.bias:#x}, {self.start:#x}-{self.end:#x})"

    @property
    def module(self) -> str | None:
        """The module name symbols carry: None for the main executable."""
        return None if self.is_main else self.name

    @property
    def elf(self) -> ELFFile:
        """The parsed ELF, opened on first use and kept open."""
        if self._elf is None:
            if self.image is not None:
                self._stream = io.BytesIO(self.image)
                self._elf = ELFFile(self._stream)
            else:
                self._elf, self._stream = open_elf(self.path)
        return self._elf

    @property
    def debug_elf(self) -> ELFFile | None:
        """The separate debug file's ELF (None without one), opened on first use."""
        if self.debug_path is None:
            return None
        if self._debug is None:
            self._debug = open_elf(self.debug_path)
        return self._debug[0]

    def dwarf_name(self, start: int, addr: int) -> str | None:
        """The name DWARF (the debug file's, else the object's own) gives the function holding
        runtime address addr, when that function's entry is start, the symbol naming addr
        (a part elsewhere, foo.cold, keeps its symbol: foo+off would be another address).
        None without DWARF for addr."""
        if self._names is None:
            try:
                elf = self.debug_elf or self.elf
            except FormatError:
                return None
            self._names = FunctionNames(elf)
        found = self._names.function_at(addr - self.bias)
        return found[1] if found is not None and start - self.bias == found[0] else None

    def symbols(self) -> list[Symbol]:
        """The object's own symbols, its debug file's (the static functions a stripped
        library lost: start_thread, clone3), and its PLT stubs."""
        if self._symbols is None:
            own = read_symbols(self.elf, bias=self.bias, module=self.module, origin=self.path)
            self._symbols = own + self._debug_symbols(own) \
                + plt_symbols(self.elf, bias=self.bias, module=self.module)
        return self._symbols

    def _debug_symbols(self, own: list[Symbol]) -> list[Symbol]:
        """The debug file's symbols the object's own table lacks, marked secondary (see
        Symbol.secondary); none when the debug file cannot be read."""
        if self.debug_path is None:
            return []
        try:
            debug = self.debug_elf
            assert debug is not None
            found = read_symbols(debug, bias=self.bias, module=self.module, origin=self.debug_path,
                                 secondary=True)
        except FormatError:
            return []           # a damaged debug file: the object's own symbols still serve
        have = {(s.name, s.addr) for s in own}
        return [s for s in found if (s.name, s.addr) not in have]

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._debug is not None:
            self._debug[1].close()
        self._stream = self._elf = self._debug = None


def open_elf(path: str) -> tuple[ELFFile, IO[bytes]]:
    """An ELFFile over an open file; FormatError when it is not a readable ELF."""
    try:
        stream = open(path, "rb")  # noqa: SIM115 - kept open for pyelftools' lazy reads
    except OSError as err:
        raise FormatError(f"{path}: {err.strerror or err}") from None
    try:
        return ELFFile(stream), stream
    except _FOREIGN as err:
        stream.close()
        raise FormatError(f"{path}: not a readable ELF file ({err})") from None


class ObjectSet:
    """Every object of a process, with the warnings met while finding them."""

    def __init__(self, objects: Sequence[ObjectFile] = (), warnings: Sequence[str] = ()) -> None:
        self.objects = sorted(objects, key=lambda o: o.start)
        self.warnings = list(warnings)
        self._types: TypeSource | None = None

    @property
    def main(self) -> ObjectFile | None:
        return next((o for o in self.objects if o.is_main), None)

    def add(self, obj: ObjectFile) -> None:
        """One more object (the vDSO, found in memory after the files)."""
        self.objects = sorted([*self.objects, obj], key=lambda o: o.start)

    def object_at(self, addr: int) -> ObjectFile | None:
        for obj in self.objects:
            if obj.contains(addr):
                return obj
        return None

    def by_name(self, name: str) -> ObjectFile | None:
        for obj in self.objects:
            if name in (obj.name, obj.name.split(".so")[0]) or (obj.is_main and name == "a.out"):
                return obj
        return None

    def symbol_table(self) -> SymbolTable:
        """All objects' symbols; an object whose symtab is damaged adds a warning instead."""
        table = SymbolTable()
        table.rename = self._dwarf_name
        for obj in self.objects:
            try:
                table.add(obj.symbols())
            except FormatError as err:
                self.warnings.append(str(err))
        return table

    def _dwarf_name(self, sym: Symbol, addr: int) -> str | None:
        obj = self.object_at(sym.addr)
        return obj.dwarf_name(sym.addr, addr) if obj is not None else None

    def type_source(self) -> TypeSource:
        """DWARF types of the objects that carry their own; nothing is parsed until a type
        is asked for."""
        if self._types is None:
            self._types = DwarfTypes([o for o in self.objects if o.debug_path is None])
        return self._types

    def type_sources(self) -> list[TypeSource]:
        """type_source(), then the DWARF of separate debug files: asked only for what the
        objects' own DWARF lacks (libc's takes seconds to index; a program's types are
        found before it is touched)."""
        views = [_DebugView(o) for o in self.objects if o.debug_path is not None]
        return [self.type_source(), *([DwarfTypes(views)] if views else [])]

    def close(self) -> None:
        for obj in self.objects:
            obj.close()


class _DebugView:
    """An object seen through its debug file, for DwarfTypes (which reads ``elf``)."""

    def __init__(self, obj: ObjectFile) -> None:
        self._obj = obj

    @property
    def name(self) -> str:
        return self._obj.name

    @property
    def is_main(self) -> bool:
        return self._obj.is_main

    @property
    def elf(self) -> ELFFile:
        debug = self._obj.debug_elf
        return debug if debug is not None else self._obj.elf


# -- loading ---------------------------------------------------------------------------

_PSEUDO_PREFIXES = ("[", "/dev/", "/memfd:", "anon_inode:", "/SYSV")


def _group(mappings: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    groups: dict[str, list[Mapping]] = {}
    for m in sorted(mappings, key=lambda m: m.start):
        if not m.path or m.path.startswith(_PSEUDO_PREFIXES):
            continue
        groups.setdefault(m.path, []).append(m)
    return groups


def _loads(elf: ELFFile) -> list[tuple[int, int, int, int]]:
    """(p_vaddr, p_offset, p_filesz, p_memsz) of each PT_LOAD."""
    return [(s["p_vaddr"], s["p_offset"], s["p_filesz"], s["p_memsz"])
            for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]


def compute_bias(elf: ELFFile, maps: Sequence[Mapping], page_size: int) -> int | None:
    """runtime - link-time address, from the mapping with the lowest file offset."""
    loads = _loads(elf)
    first = min(maps, key=lambda m: m.offset)
    for vaddr, off, filesz, _ in loads:
        if (off & ~(page_size - 1)) <= first.offset < off + max(filesz, 1):
            link = vaddr - off + first.offset
            return first.start - (link & ~(page_size - 1))
    if loads and first.offset == 0:
        vaddr, off = loads[0][0], loads[0][1]
        return first.start - ((vaddr - off) & ~(page_size - 1))
    return None


def _extent(elf: ELFFile, bias: int, maps: Sequence[Mapping]) -> tuple[int, int]:
    """The address range an object covers: its mappings plus its PT_LOADs' memsz (bss)."""
    starts = [m.start for m in maps]
    ends = [m.end for m in maps]
    for vaddr, _, _, memsz in _loads(elf):
        starts.append(vaddr + bias)
        ends.append(vaddr + bias + memsz)
    return min(starts), max(ends)


def _is_elf_in_memory(space: AddressSpace, addr: int) -> bool | None:
    """True/False from the header kept in the dump; None when the dump left it out."""
    try:
        return space.read(addr, 4) == b"\x7fELF"
    except FaultError:
        return None


class _Loader:
    """The state of one load_objects call, so each step stays a small method."""

    def __init__(self, space: AddressSpace, *, core_path: str, arch: Arch, search_path: Sequence[str],
                 sysroot: str, extra_files: Sequence[str], check_build_id: bool,
                 debug_directories: Sequence[str]) -> None:
        self.space = space
        self.core_dir = os.path.dirname(os.path.abspath(core_path)) if core_path else os.getcwd()
        self.page_size = arch.page_size
        self.search_path = list(search_path)
        self.sysroot = sysroot
        files = [os.path.abspath(os.path.expanduser(f)) for f in extra_files]
        # -s files that are separate debug files name no code: they go with their object
        self.debug_extra = [f for f in files if is_debug_only(f)]
        self.extra = [f for f in files if f not in self.debug_extra]
        self.extra_ids = {f: build_id_of_file(f) for f in files}
        self.debug_dirs = list(debug_directories)
        self.used_extra: set[str] = set()
        self.check = check_build_id
        self.warnings: list[str] = []

    def locate(self, recorded: str, expected: bytes | None) -> str | None:
        """A file for a recorded path: -s files first (they are what the user asked for), then
        the search order of find_file; a file with the wrong build-id is reported, not used."""
        base = os.path.basename(recorded)
        hit = self._named(base, expected, self.extra)
        if hit is not None:
            return hit
        for f in self.extra:
            if os.path.basename(f) == base and f not in self.used_extra:
                # another build of this file: its symbols would name the wrong code
                self.used_extra.add(f)
                self.warnings.append(f"{f}: build-id mismatch: not the {base} the core mapped "
                                     f"(want {expected.hex() if expected else '?'}); "
                                     "symbols.check_build_id = false uses it anyway")
        found = find_file(recorded, core_dir=self.core_dir, search_path=self.search_path,
                          sysroot=self.sysroot, expected_build_id=expected, check_build_id=self.check)
        if found is not None:
            return found
        # a debug file alone: its symbols name the object's code, though it has no CFI
        hit = self._named(base, expected, self.debug_extra)
        if hit is not None:
            return hit
        wrong = find_file(recorded, core_dir=self.core_dir, search_path=self.search_path,
                          sysroot=self.sysroot, check_build_id=False)
        name = os.path.basename(recorded)
        if wrong is not None:
            self.warnings.append(f"{name}: build-id mismatch: {wrong} is not the file the core mapped "
                                 f"(want {expected.hex() if expected else '?'}); symbols.check_build_id = false "
                                 "uses it anyway")
        else:
            where = [recorded, self.core_dir, *self.search_path]
            self.warnings.append(f"{name}: not found (searched {', '.join(where)})")
        return None

    def _named(self, base: str, expected: bytes | None, files: Sequence[str]) -> str | None:
        """The -s file for a mapped file: the same build-id, or the same name when the
        build-id cannot say otherwise."""
        for f in files:
            fid = self.extra_ids[f]
            same_id = expected is not None and fid == expected
            if same_id or (os.path.basename(f) == base and (not self.check or expected is None or fid == expected)):
                self.used_extra.add(f)
                return f
        return None

    def debug_file(self, path: str, elf: ELFFile, expected: bytes | None) -> str | None:
        """The object's separate debug file, unless the object carries its own DWARF."""
        if path in self.debug_extra or elf.get_section_by_name(".debug_info") is not None:
            return None
        build_id = expected or build_id_of_file(path)
        found = find_debug_file(path, elf, build_id=build_id, directories=self.debug_dirs,
                                named=self.debug_extra)
        if found is not None and found in self.debug_extra:
            self.used_extra.add(found)
        return found

    def load_group(self, recorded: str, maps: list[Mapping]) -> ObjectFile | None:
        header = min(maps, key=lambda m: m.offset)
        in_mem = _is_elf_in_memory(self.space, header.start) if header.offset == 0 else None
        if in_mem is False:
            return None          # a mapped data file (locale archive, cache), not an ELF
        expected = build_id_in_memory(self.space, header.start) if in_mem else None
        path = self.locate(recorded.removesuffix(" (deleted)"), expected)
        if path is None:
            return None
        try:
            elf, stream = open_elf(path)
        except FormatError as err:
            if in_mem:
                self.warnings.append(str(err))
            return None
        try:
            bias = compute_bias(elf, maps, self.page_size)
            if bias is None:
                self.warnings.append(f"{path}: no PT_LOAD matches its mappings; load bias unknown")
                return None
            start, end = _extent(elf, bias, maps)
            is_exec = elf.header["e_type"] == "ET_EXEC"
            debug = self.debug_file(path, elf, expected)
        except _FOREIGN as err:
            self.warnings.append(f"{path}: bad program headers ({err})")
            return None
        finally:
            stream.close()
        obj = ObjectFile(path, bias=bias, start=start, end=end, is_main=is_exec, mappings=maps,
                         name=os.path.basename(recorded.removesuffix(" (deleted)")), debug_path=debug)
        return obj

    def unmapped_extras(self) -> list[ObjectFile]:
        """-s files that matched no mapping (a core without NT_FILE): taken at their link address."""
        out = []
        for f in self.debug_extra:
            if f not in self.used_extra:
                self.warnings.append(f"{f}: a separate debug file of no object the core mapped "
                                     f"(build-id {(self.extra_ids[f] or b'').hex() or '?'}): not used")
        for f in self.extra:
            if f in self.used_extra:
                continue
            try:
                elf, stream = open_elf(f)
                try:
                    loads = _loads(elf)
                    is_exec = elf.header["e_type"] == "ET_EXEC"
                finally:
                    stream.close()
            except FormatError as err:
                self.warnings.append(str(err))
                continue
            if not loads:
                self.warnings.append(f"{f}: no PT_LOAD segments")
                continue
            start = min(v for v, _, _, _ in loads)
            end = max(v + mem for v, _, _, mem in loads)
            out.append(ObjectFile(f, start=start, end=end, is_main=is_exec))
        return out


def _pick_main(objects: list[ObjectFile], main_at: int | None) -> None:
    """One main executable: the object holding main_at (the core's AT_PHDR: the kernel
    mapped the executable there), none when that object was not found; without it, an
    ET_EXEC if there is one, else the lowest-mapped object. A guess must not stand in for
    a known executable: a missing one made libc the "executable" (issue 15)."""
    if main_at is not None:
        mains = [o for o in objects if o.contains(main_at)]
    else:
        mains = [o for o in objects if o.is_main]
        if not mains and objects:
            mains = [min(objects, key=lambda o: o.start)]
    for o in objects:
        o.is_main = bool(mains) and o is mains[0]


def load_objects(space: AddressSpace, mappings: Sequence[Mapping], *, core_path: str, arch: Arch,
                 search_path: Sequence[str] = (), sysroot: str = "", extra_files: Sequence[str] = (),
                 check_build_id: bool = True, main_at: int | None = None,
                 debug_directories: Sequence[str] = ()) -> ObjectSet:
    """The ObjectSet of a process from its NT_FILE mappings (see the module docstring);
    main_at is an address inside the executable when the core says where it is;
    debug_directories are searched for separate debug files (pmdb.toml's
    debuginfo.directories)."""
    loader = _Loader(space, core_path=core_path, arch=arch, search_path=search_path, sysroot=sysroot,
                     extra_files=extra_files, check_build_id=check_build_id,
                     debug_directories=debug_directories)
    objects: list[ObjectFile] = []
    for recorded, maps in _group(mappings).items():
        obj = loader.load_group(recorded, maps)
        if obj is not None:
            objects.append(obj)
    objects += loader.unmapped_extras()
    _pick_main(objects, main_at)
    return ObjectSet(objects, loader.warnings)
