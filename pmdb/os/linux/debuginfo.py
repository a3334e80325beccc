"""The source lines a kernel dump's debug files give: the vmlinux's, and loaded modules'.

One ``KernelDebugInfo`` per kernel (``debuginfo_for``), made on first use: stacks and
listings that never ask for a line never open anything. The vmlinux is the one the opener
matched to the dump (its path in ``km.vmlinux``); its addresses are the running kernel's
less the KASLR offset. Modules' debug files are added by ``mod -s`` or the command line
(``load_module``) and answer for the addresses of their sections.
"""

from __future__ import annotations

import os
import struct
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pmdb.errors import CommandError, FormatError, PmdbError

if TYPE_CHECKING:      # pyelftools and the DWARF readers load on first use (start-up time)
    from pmdb.cache import Cache
    from pmdb.types.debugfile import DebugFile
    from pmdb.types.dwarf_module import ModuleDwarf
    from pmdb.types.dwarf_source import SourceLines

LineAt = Callable[[int], "tuple[str, int] | None"]


@dataclass(frozen=True)
class KernelCode:
    """What frame parameters need of the kernel's code: its load bias (KASLR) and a reader
    of its DWARF."""

    bias: int
    frame_params: Any
    cfi: Any = None          # its .debug_frame (a CfiTable): the registers ORC does not restore


class KernelDebugInfo:
    """Source lines by running address, from every debug file known for the kernel."""

    def __init__(self, kernel: Any, cache: Cache | None) -> None:
        self.kernel = kernel
        self.cache = cache
        self.problems: list[str] = []
        self._vmlinux: SourceLines | None = None
        self._looked = False
        self._debug: DebugFile | None = None
        self._sizes: dict[int, int] | None = None
        self._module_trees: dict[str, dict[str, str]] = {}
        self._tried: set[str] = set()
        self.directories: list[str] = []       # where modules' debug files are looked for
        self.modules: dict[str, ModuleDwarf] = {}
        self._code: KernelCode | None = None
        self._module_code: dict[str, KernelCode] = {}

    def vmlinux_lines(self) -> SourceLines | None:
        from pmdb.types.debugfile import DebugFile
        from pmdb.types.dwarf_source import SourceLines, cache_label, pyelftools_unit_info

        if not self._looked:
            self._looked = True
            path = getattr(self.kernel.km, "vmlinux", "")
            if path:
                try:
                    debug = self._debug = DebugFile(path)
                    self._vmlinux = SourceLines(
                        debug.mm, debug.sections, pyelftools_unit_info(debug.dwarf()), little=debug.little,
                        bias=self._bias(debug), cache=self.cache,
                        cache_label=cache_label(path, debug.build_id()))
                except PmdbError as err:
                    self.problems.append(f"{path}: no source lines ({err})")
        return self._vmlinux

    def load_module(self, name: str, path: str) -> ModuleDwarf:
        """Read a module's debug file (``mod -s NAME FILE``), relocated to where the dump's
        module ``name`` was loaded; FormatError when it is not that module's build."""
        from pmdb.symbols.kmodules import module_sections
        from pmdb.types.dwarf_module import ModuleDwarf

        kernel = self.kernel
        mod = next((m for m in kernel.modules() if m.name == name), None)
        if mod is None:
            raise CommandError(f"no module {name} is loaded")
        sections = module_sections(kernel.mem, mod.address, kernel.types)
        if not sections:
            raise FormatError(f"module {name} keeps no section addresses (sect_attrs): its debug file cannot be placed")
        found = ModuleDwarf(path, sections)
        loaded = self.module_build_id(name)
        if found.build_id and loaded and loaded != found.build_id:
            raise FormatError(f"{path}: build-id {found.build_id} is not the loaded {name}'s ({loaded})")
        self.drop_module(name)
        self.modules[name] = found
        kernel.types.add_source(found.types)
        return found

    def load_named(self, paths: Sequence[str]) -> list[str]:
        """Load each module debug file (ET_REL) among ``paths`` (the files named with the
        dump; others are skipped) for the module it names; one warning per failure."""
        problems = []
        for path in paths:
            name = module_file_name(path)
            if name is None:
                continue
            try:
                self.load_module(name, path)
            except PmdbError as err:
                problems.append(f"{err}: not used")
        return problems

    def find_module(self, name: str, directories: Sequence[str]) -> str | None:
        """A debug file of the loaded module ``name`` in Debian's -dbg layout under each
        directory (.build-id/xx/rest.debug by the loaded build-id, lib/modules/RELEASE/**/NAME.ko)."""
        build_id = self.module_build_id(name)
        release = self.kernel.km.info.osrelease
        for top in directories:
            top = os.path.expanduser(top)
            if build_id:
                path = os.path.join(top, ".build-id", build_id[:2], f"{build_id[2:]}.debug")
                if os.path.isfile(path):
                    return path
            tree = self._module_trees.get(top)
            if tree is None:
                tree = self._module_trees[top] = _ko_files(os.path.join(top, "lib", "modules", release))
            hit = tree.get(name.replace("-", "_"))
            if hit:
                return hit
        return None

    def module_build_id(self, name: str) -> str:
        """The loaded module's GNU build-id (its .note.gnu.build-id section in memory), or ""."""
        from pmdb.symbols.kmodules import module_sections
        from pmdb.types.debugfile import build_id_note

        kernel = self.kernel
        mod = next((m for m in kernel.modules() if m.name == name), None)
        if mod is None:
            return ""
        try:
            note = module_sections(kernel.mem, mod.address, kernel.types).get(".note.gnu.build-id")
            found = build_id_note(kernel.mem.read(note, 64), self._endian()) if note else None
        except PmdbError:
            return ""
        return found.hex() if found else ""

    def _endian(self) -> str:
        return "<" if self.kernel.arch.byteorder == "little" else ">"

    def drop_module(self, name: str) -> bool:
        """Forget a module's debug file (``mod -d``); whether there was one."""
        old = self.modules.pop(name, None)
        if old is None:
            return False
        self.kernel.types.remove_source(old.types)
        return True

    def code_at(self, addr: int) -> KernelCode | None:
        """The debug file of the code at ``addr`` as frame parameters read it
        (pmdb.unwind.params): a module's (mod -s, or found), else the vmlinux; None without."""
        for name, mod in self.modules.items():
            if mod.holds(addr):
                if name not in self._module_code:
                    elf = mod.relocated_elf()
                    self._module_code[name] = self._code_of(0, elf, mod.dwarf, mod.path)
                return self._module_code[name]
        lines = self.vmlinux_lines()
        if lines is None or self._debug is None or self._in_module(addr):
            return None
        if self._code is None:
            self._code = self._code_of(lines.bias, self._debug.elf, self._debug.dwarf(), self._debug.path)
        return self._code

    def _code_of(self, bias: int, elf: Any, dwarf: Any, path: str) -> KernelCode:
        from pmdb.unwind.cfi import CfiTable
        from pmdb.unwind.params import FrameParams

        try:
            cfi = CfiTable(elf)
        except FormatError as err:
            self.problems.append(f"{path}: no call-frame information ({err})")
            cfi = None
        return KernelCode(bias, FrameParams(elf, dwarf), cfi)

    def _in_module(self, addr: int) -> bool:
        return any(m.base <= addr < m.base + m.size for m in self.kernel.modules())

    def function_size(self, addr: int) -> int | None:
        """The size the vmlinux's ELF symbol table gives the function starting at ``addr``
        (crash's extent of ``dis FUNCTION``; kallsyms knows only where the next symbol is)."""
        lines = self.vmlinux_lines()
        if lines is None or self._debug is None:
            return None
        if self._sizes is None:
            try:
                self._sizes = elf_function_sizes(self._debug)
            except PmdbError as err:
                self.problems.append(f"{self._debug.path}: no symbol sizes ({err})")
                self._sizes = {}
        return self._sizes.get(addr - lines.bias)

    def _bias(self, debug: DebugFile) -> int:
        """Running address less the vmlinux's: where kallsyms puts ``_text`` less the file's
        .text (KASLR; VMCOREINFO's KERNELOFFSET is not there on every kernel)."""
        km = self.kernel.km
        sym = km.symbols.lookup("_text")
        text = next((sec["sh_addr"] for sec in debug.elf.iter_sections() if sec.name == ".text"), None)
        if sym is not None and sym.module is None and text:
            return int(sym.addr - text)
        return int(km.info.kernel_offset)

    def line_at(self, addr: int) -> tuple[str, int] | None:
        """(file, line) of the kernel or module code at ``addr``; None without debug info
        for it (or when that debug info is damaged: said once in ``problems``)."""
        try:
            for mod in self.modules.values():
                if mod.holds(addr):
                    return mod.line_at(addr)
            found = self._discover(addr)
            if found is not None:
                return found.line_at(addr)
            lines = self.vmlinux_lines()
            return lines.line_at(addr) if lines is not None else None
        except PmdbError as err:
            text = f"source lines: {err}"
            if text not in self.problems:
                self.problems.append(text)
            return None

    def _discover(self, addr: int) -> ModuleDwarf | None:
        """The debug file of the module holding ``addr``, found in ``directories`` (once per
        module, on the first line asked of it)."""
        if not self.directories:
            return None
        for m in self.kernel.modules():
            if m.base <= addr < m.base + m.size and m.name not in self._tried:
                self._tried.add(m.name)
                path = self.find_module(m.name, self.directories)
                if path is not None:
                    found = self.load_module(m.name, path)
                    return found if found.holds(addr) else None
        return None

    def load_all(self, directories: Sequence[str]) -> list[str]:
        """crash's ``mod -S``: every loaded module's debug file found under ``directories``;
        returns the names of the modules whose file was found and read."""
        done = []
        for m in self.kernel.modules():
            path = self.find_module(m.name, directories)
            if path is not None:
                self.load_module(m.name, path)
                done.append(m.name)
        return done

    def has_lines(self) -> bool:
        return bool(self.modules or self.directories) or self.vmlinux_lines() is not None


def elf_function_sizes(debug: DebugFile) -> dict[int, int]:
    """address -> size of every sized symbol in the file's .symtab (read raw: pyelftools'
    per-symbol objects take seconds for a vmlinux's 150,000)."""
    where = debug.sections.get(".symtab")
    if where is None or debug.ptr_size != 8:
        return {}
    start, size = where
    fmt = ("<" if debug.little else ">") + "IBBHQQ"
    out: dict[int, int] = {}
    try:
        for _name, _info, _other, shndx, value, length in struct.iter_unpack(fmt, debug.mm[start:start + size - size % 24]):
            if length and shndx and out.get(value, 0) < length:
                out[value] = length
    except struct.error as err:
        raise FormatError(f".symtab: {err}") from None
    return out


def module_file_name(path: str) -> str | None:
    """The module a relocatable ELF file is (its .modinfo ``name=``, else its file name), or
    None for any other file."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf.header["e_type"] != "ET_REL":
                return None
            info = elf.get_section_by_name(".modinfo")
            fields = info.data().split(b"\0") if info is not None else []
    except (OSError, ELFError, ValueError, struct.error):
        return None
    for field in fields:
        if field.startswith(b"name="):
            return field[5:].decode("ascii", "replace")
    return os.path.basename(path).split(".ko")[0].replace("-", "_")


def _ko_files(top: str) -> dict[str, str]:
    """module name -> path of each NAME.ko (or NAME.ko.debug) below ``top`` (walked once)."""
    out: dict[str, str] = {}
    for root, _dirs, names in os.walk(top):
        for n in names:
            if n.endswith((".ko", ".ko.debug")):
                out.setdefault(n.split(".ko")[0].replace("-", "_"), os.path.join(root, n))
    return out


_BY_KERNEL: weakref.WeakKeyDictionary[Any, KernelDebugInfo] = weakref.WeakKeyDictionary()


def debuginfo_for(kernel: Any, cache: Cache | None = None) -> KernelDebugInfo:
    """The kernel's debug info (one per kernel, so decoded units are shared)."""
    found = _BY_KERNEL.get(kernel)
    if found is None:
        found = _BY_KERNEL[kernel] = KernelDebugInfo(kernel, cache)
    return found
