"""The executable and shared libraries of a process, found on disk and placed at their load bias.

A core's NT_FILE note says which file each mapping came from; load_objects
groups those mappings per file, finds each file (finder.find_file), checks its
build-id against the copy of its ELF header kept in the core, and computes the
load bias. Problems become warnings, never errors: a core is still worth
reading without its libraries.
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
from pmdb.symbols.elf import read_symbols
from pmdb.symbols.finder import build_id_in_memory, build_id_of_file, find_file
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
                 image: bytes | None = None) -> None:
        self.path = path
        self.image = image        # the file's bytes when it lives only in memory (the vDSO)
        self.name = name or os.path.basename(path)
        self.bias = bias
        self.start = start
        self.end = end
        self.is_main = is_main
        self.mappings = list(mappings)
        self._stream: IO[bytes] | None = None
        self._elf: ELFFile | None = None
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

    def symbols(self) -> list[Symbol]:
        if self._symbols is None:
            self._symbols = read_symbols(self.elf, bias=self.bias, module=self.module, origin=self.path) \
                + plt_symbols(self.elf, bias=self.bias, module=self.module)
        return self._symbols

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = self._elf = None


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
        for obj in self.objects:
            try:
                table.add(obj.symbols())
            except FormatError as err:
                self.warnings.append(str(err))
        return table

    def type_source(self) -> TypeSource:
        """DWARF types of every object; nothing is parsed until a type is asked for."""
        if self._types is None:
            self._types = DwarfTypes(self.objects)
        return self._types

    def close(self) -> None:
        for obj in self.objects:
            obj.close()


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
                 sysroot: str, extra_files: Sequence[str], check_build_id: bool) -> None:
        self.space = space
        self.core_dir = os.path.dirname(os.path.abspath(core_path)) if core_path else os.getcwd()
        self.page_size = arch.page_size
        self.search_path = list(search_path)
        self.sysroot = sysroot
        self.extra = [os.path.abspath(os.path.expanduser(f)) for f in extra_files]
        self.extra_ids = {f: build_id_of_file(f) for f in self.extra}
        self.used_extra: set[str] = set()
        self.check = check_build_id
        self.warnings: list[str] = []

    def locate(self, recorded: str, expected: bytes | None) -> str | None:
        """A file for a recorded path: -s files first (they are what the user asked for), then
        the search order of find_file; a file with the wrong build-id is reported, not used."""
        base = os.path.basename(recorded)
        for f in self.extra:
            fid = self.extra_ids[f]
            same_id = expected is not None and fid == expected
            if same_id or (os.path.basename(f) == base and (not self.check or expected is None or fid == expected)):
                self.used_extra.add(f)
                return f
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
        except _FOREIGN as err:
            self.warnings.append(f"{path}: bad program headers ({err})")
            return None
        finally:
            stream.close()
        obj = ObjectFile(path, bias=bias, start=start, end=end, is_main=is_exec, mappings=maps,
                         name=os.path.basename(recorded.removesuffix(" (deleted)")))
        return obj

    def unmapped_extras(self) -> list[ObjectFile]:
        """-s files that matched no mapping (a core without NT_FILE): taken at their link address."""
        out = []
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
                 check_build_id: bool = True, main_at: int | None = None) -> ObjectSet:
    """The ObjectSet of a process from its NT_FILE mappings (see the module docstring);
    main_at is an address inside the executable when the core says where it is."""
    loader = _Loader(space, core_path=core_path, arch=arch, search_path=search_path, sysroot=sysroot,
                     extra_files=extra_files, check_build_id=check_build_id)
    objects: list[ObjectFile] = []
    for recorded, maps in _group(mappings).items():
        obj = loader.load_group(recorded, maps)
        if obj is not None:
            objects.append(obj)
    objects += loader.unmapped_extras()
    _pick_main(objects, main_at)
    return ObjectSet(objects, loader.warnings)
