"""The source lines a kernel dump's debug files give: the vmlinux's, and loaded modules'.

One ``KernelDebugInfo`` per kernel (``debuginfo_for``), made on first use: stacks and
listings that never ask for a line never open anything. The vmlinux is the one the opener
matched to the dump (its path in ``km.vmlinux``); its addresses are the running kernel's
less the KASLR offset. Modules' debug files are added by ``mod -s`` or the command line
(pmdb.os.linux.module_debug) and answer for the addresses of their sections.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from pmdb.cache import Cache
from pmdb.errors import PmdbError
from pmdb.types.debugfile import DebugFile
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
        self.modules: dict[str, Any] = {}          # name -> ModuleDebug (module_debug.py)

    def vmlinux_lines(self) -> SourceLines | None:
        if not self._looked:
            self._looked = True
            path = getattr(self.kernel.km, "vmlinux", "")
            if path:
                try:
                    debug = DebugFile(path)
                    self._vmlinux = SourceLines(
                        debug.mm, debug.sections, pyelftools_unit_info(debug.dwarf()), little=debug.little,
                        bias=self.kernel.km.info.kernel_offset, cache=self.cache,
                        cache_label=cache_label(path, debug.build_id()))
                except PmdbError as err:
                    self.problems.append(f"{path}: no source lines ({err})")
        return self._vmlinux

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


_BY_KERNEL: weakref.WeakKeyDictionary[Any, KernelDebugInfo] = weakref.WeakKeyDictionary()


def debuginfo_for(kernel: Any, cache: Cache | None = None) -> KernelDebugInfo:
    """The kernel's debug info (one per kernel, so decoded units are shared)."""
    found = _BY_KERNEL.get(kernel)
    if found is None:
        found = _BY_KERNEL[kernel] = KernelDebugInfo(kernel, cache)
    return found
