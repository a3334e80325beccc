"""The source lines a kernel dump's debug files give: the vmlinux's, and loaded modules'.

One ``KernelDebugInfo`` per kernel (``debuginfo_for``), made on first use: stacks and
listings that never ask for a line never open anything. The vmlinux is the one the opener
matched to the dump (its path in ``km.vmlinux``); its addresses are the running kernel's
less the KASLR offset. Modules' debug files are added by ``mod -s`` or the command line
(``load_module``) and answer for the addresses of their sections.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Callable
from typing import Any

from pmdb.cache import Cache
from pmdb.errors import CommandError, FaultError, FormatError, PmdbError
from pmdb.symbols.kmodules import module_sections
from pmdb.types.debugfile import DebugFile, build_id_note
from pmdb.types.dwarf_module import ModuleDwarf
from pmdb.types.dwarf_source import SourceLines, cache_label, pyelftools_unit_info

LineAt = Callable[[int], "tuple[str, int] | None"]


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
        self.modules: dict[str, ModuleDwarf] = {}

    def vmlinux_lines(self) -> SourceLines | None:
        if not self._looked:
            self._looked = True
            path = getattr(self.kernel.km, "vmlinux", "")
            if path:
                try:
                    debug = self._debug = DebugFile(path)
                    self._vmlinux = SourceLines(
                        debug.mm, debug.sections, pyelftools_unit_info(debug.dwarf()), little=debug.little,
                        bias=self.kernel.km.info.kernel_offset, cache=self.cache,
                        cache_label=cache_label(path, debug.build_id()))
                except PmdbError as err:
                    self.problems.append(f"{path}: no source lines ({err})")
        return self._vmlinux

    def load_module(self, name: str, path: str) -> ModuleDwarf:
        """Read a module's debug file (``mod -s NAME FILE``), relocated to where the dump's
        module ``name`` was loaded; FormatError when it is not that module's build."""
        kernel = self.kernel
        mod = next((m for m in kernel.modules() if m.name == name), None)
        if mod is None:
            raise CommandError(f"no module {name} is loaded")
        sections = module_sections(kernel.mem, mod.address, kernel.types)
        if not sections:
            raise FormatError(f"module {name} keeps no section addresses (sect_attrs): its debug file cannot be placed")
        found = ModuleDwarf(path, sections)
        note = sections.get(".note.gnu.build-id")
        if found.build_id and note:
            try:
                loaded = build_id_note(kernel.mem.read(note, 64), "<" if kernel.arch.byteorder == "little" else ">")
            except FaultError:
                loaded = None
            if loaded is not None and loaded.hex() != found.build_id:
                raise FormatError(f"{path}: build-id {found.build_id} is not the loaded {name}'s ({loaded.hex()})")
        self.drop_module(name)
        self.modules[name] = found
        kernel.types.add_source(found.types)
        return found

    def drop_module(self, name: str) -> bool:
        """Forget a module's debug file (``mod -d``); whether there was one."""
        old = self.modules.pop(name, None)
        if old is None:
            return False
        self.kernel.types.remove_source(old.types)
        return True

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

    def line_at(self, addr: int) -> tuple[str, int] | None:
        """(file, line) of the kernel or module code at ``addr``; None without debug info
        for it (or when that debug info is damaged: said once in ``problems``)."""
        try:
            for mod in self.modules.values():
                if mod.holds(addr):
                    return mod.line_at(addr)
            lines = self.vmlinux_lines()
            return lines.line_at(addr) if lines is not None else None
        except PmdbError as err:
            text = f"source lines: {err}"
            if text not in self.problems:
                self.problems.append(text)
            return None

    def has_lines(self) -> bool:
        return bool(self.modules) or self.vmlinux_lines() is not None


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


_BY_KERNEL: weakref.WeakKeyDictionary[Any, KernelDebugInfo] = weakref.WeakKeyDictionary()


def debuginfo_for(kernel: Any, cache: Cache | None = None) -> KernelDebugInfo:
    """The kernel's debug info (one per kernel, so decoded units are shared)."""
    found = _BY_KERNEL.get(kernel)
    if found is None:
        found = _BY_KERNEL[kernel] = KernelDebugInfo(kernel, cache)
    return found
