"""Names for a core's anonymous mappings, as /proc/PID/maps gives them.

A core keeps no names for the kernel's special mappings; they are found again from
the auxv note: [vdso] holds AT_SYSINFO_EHDR and the read-only pages just below it
are [vvar] (since Linux 6.13 split into [vvar] and [vvar_vclock]); [stack] holds the
strings the kernel copied to the top of the initial stack (AT_EXECFN, AT_RANDOM);
[heap] is the first anonymous mapping at or above the end of the executable's bss
(the brk area starts there, after a random gap), read from the program headers the
core keeps at AT_PHDR; [vsyscall] is x86-64's fixed legacy page.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import replace

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace
from pmdb.threads import Mapping

VSYSCALL = 0xFFFFFFFFFF600000
_PT_LOAD, _PT_PHDR = 1, 6


def label_mappings(maps: Sequence[Mapping], aux: Callable[[str], int | None],
                   space: AddressSpace, ptr_size: int, little: bool) -> list[Mapping]:
    """maps with the special anonymous ones named; file mappings are left as they are."""
    labels: dict[int, str] = {}              # index in maps -> label

    def at(addr: int | None) -> int | None:
        if not addr:
            return None
        return next((i for i, m in enumerate(maps) if m.start <= addr < m.end and not m.path), None)

    vdso = at(aux("AT_SYSINFO_EHDR"))
    if vdso is not None:
        labels[vdso] = "[vdso]"
        below = _adjacent_below(maps, vdso, limit=2)
        names = ["[vvar]"] if len(below) == 1 else ["[vvar_vclock]", "[vvar]"]
        labels.update(zip(below, names, strict=False))
    stack = at(aux("AT_EXECFN")) or at(aux("AT_RANDOM"))
    if stack is not None:
        labels[stack] = "[stack]"
    end = _bss_end(space, aux("AT_PHDR"), aux("AT_PHNUM"), ptr_size, little)
    if end is not None:
        heap = next((i for i, m in enumerate(maps) if m.start >= end and not m.path
                     and m.perms.startswith("rw") and i not in labels), None)
        if heap is not None:
            labels[heap] = "[heap]"
    for i, m in enumerate(maps):
        if m.start == VSYSCALL and ptr_size == 8 and not m.path:
            labels[i] = "[vsyscall]"
    return [replace(m, path=labels[i]) if i in labels else m for i, m in enumerate(maps)]


def _adjacent_below(maps: Sequence[Mapping], i: int, *, limit: int) -> list[int]:
    """Indexes of the anonymous read-only mappings ending exactly where maps[i] starts,
    going down, nearest first."""
    out: list[int] = []
    while i > 0 and len(out) < limit:
        prev = maps[i - 1]
        if prev.end != maps[i].start or prev.path or prev.perms != "r--":
            break
        out.append(i - 1)
        i -= 1
    return out


def _bss_end(space: AddressSpace, phdr: int | None, phnum: int | None, ptr_size: int,
             little: bool) -> int | None:
    """The end of the executable's last PT_LOAD (its bss) at run time, from the program
    headers at AT_PHDR; PT_PHDR gives the load bias. None when they are unreadable."""
    if not phdr or not phnum or phnum > 256:
        return None
    e = "<" if little else ">"
    size, fmt = (56, e + "IIQQQQQQ") if ptr_size == 8 else (32, e + "IIIIIIII")
    try:
        raw = space.read(phdr, size * phnum)
    except FaultError:
        return None
    heads = [struct.unpack_from(fmt, raw, k * size) for k in range(phnum)]
    # (p_type, p_vaddr, p_memsz) whichever the word size orders them
    rows = [(h[0], h[3], h[6]) if ptr_size == 8 else (h[0], h[2], h[5]) for h in heads]
    bias = next((phdr - vaddr for kind, vaddr, _ in rows if kind == _PT_PHDR), None)
    loads = [(vaddr, memsz) for kind, vaddr, memsz in rows if kind == _PT_LOAD]
    if bias is None or not loads:
        return None
    return max(v + m for v, m in loads) + bias
