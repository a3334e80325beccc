"""Names for PLT stubs (``abort@plt``), as objdump and gdb give them.

A PLT entry has no symbol of its own: a call through it would be named after
whatever symbol precedes the PLT (``_init+0x30``). Each x86 stub jumps through a
GOT slot, and the dynamic relocation of that slot names the function, so the
stub is named ``function@plt``. The jumps decoded: ``jmp *disp(%rip)`` on
x86-64 (``ff 25``, optionally after ``f2`` bnd or ``endbr64``), ``jmp *abs`` on
i386 (``ff 25``) and ``jmp *disp(%ebx)`` in i386 PIC code (``ff a3``, %ebx holding
``.got.plt``'s address).
"""

from __future__ import annotations

import struct

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from pmdb.symbols.table import Symbol

_R_X86_64_IRELATIVE, _R_386_IRELATIVE = 37, 42
_PLT_SECTIONS = (".plt", ".plt.sec", ".plt.got")
_FOREIGN = (ELFError, struct.error, ValueError, KeyError, AssertionError, OSError, IndexError)


def plt_symbols(elf: ELFFile, *, bias: int = 0, module: str | None = None) -> list[Symbol]:
    """``name@plt`` for each x86 PLT stub whose GOT slot a dynamic relocation names;
    nothing for other machines or when the sections cannot be read."""
    if elf["e_machine"] not in ("EM_X86_64", "EM_386"):
        return []
    try:
        slots = _slot_names(elf)
        if not slots:
            return []
        gotplt = elf.get_section_by_name(".got.plt")
        ebx = gotplt["sh_addr"] if gotplt is not None else None
        out: list[Symbol] = []
        for name in _PLT_SECTIONS:
            sec = elf.get_section_by_name(name)
            if sec is None or sec["sh_type"] == "SHT_NOBITS":
                continue
            out += _stubs(sec.data(), sec["sh_addr"], sec["sh_entsize"] or 16, elf.elfclass,
                          slots, ebx, bias, module)
        return out
    except _FOREIGN:
        return []


def _slot_names(elf: ELFFile) -> dict[int, str]:
    """GOT slot address -> the symbol its dynamic relocation names."""
    slots: dict[int, str] = {}
    for sec in elf.iter_sections():
        if not isinstance(sec, RelocationSection) or not sec.name.startswith((".rela.", ".rel.")):
            continue
        if sec["sh_link"] == 0:
            continue
        symtab = elf.get_section(sec["sh_link"])
        if not isinstance(symtab, SymbolTableSection):
            continue
        for rel in sec.iter_relocations():
            index = rel["r_info_sym"]
            if index == 0:
                # an ifunc's slot (R_X86_64_IRELATIVE): objdump names it by the resolver
                # (i386's REL keeps the addend in the slot, and objdump leaves it out)
                if rel.is_RELA() and rel["r_info_type"] == _R_X86_64_IRELATIVE and elf.elfclass == 64:
                    slots.setdefault(rel["r_offset"], f"*ABS*+{rel['r_addend']:#x}")
                elif not rel.is_RELA() and rel["r_info_type"] == _R_386_IRELATIVE and elf.elfclass == 32:
                    slots.setdefault(rel["r_offset"], "*ABS*")
                continue
            name = symtab.get_symbol(index).name
            if name:
                slots.setdefault(rel["r_offset"], name)
    return slots


def _stubs(data: bytes, addr: int, entsize: int, elfclass: int, slots: dict[int, str],
           ebx: int | None, bias: int, module: str | None) -> list[Symbol]:
    out: list[Symbol] = []
    named: set[int] = set()
    pos = data.find(b"\xff", 0)
    while 0 <= pos < len(data) - 5:
        modrm = data[pos + 1]
        disp = struct.unpack_from("<i", data, pos + 2)[0]
        slot = None
        if modrm == 0x25:                        # jmp *disp(%rip) / jmp *abs32
            slot = addr + pos + 6 + disp if elfclass == 64 else disp & 0xFFFFFFFF
        elif modrm == 0xA3 and elfclass == 32 and ebx is not None:   # jmp *disp(%ebx)
            slot = ebx + disp
        entry = pos - pos % entsize
        if slot in slots and entry not in named:
            named.add(entry)
            out.append(Symbol(f"{slots[slot]}@plt", addr + entry + bias, entsize, "func", module, "local"))
        pos = data.find(b"\xff", pos + 1)
    return out
