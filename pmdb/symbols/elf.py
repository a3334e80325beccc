"""ELF symbol tables (.symtab, else .dynsym) turned into pmdb Symbols.

pyelftools does the parsing; its errors are translated to FormatError here so
a damaged library gives one line instead of a traceback.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterator

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import Section, SymbolTableSection

from pmdb.errors import FormatError
from pmdb.symbols.table import Symbol

# st_info type -> pmdb kind; other types (section, file) name nothing callable or readable
_KINDS = {2: "func", 10: "func", 1: "object", 6: "object", 5: "object", 0: "other"}
_BINDINGS = {0: "local", 1: "global", 2: "weak", 10: "global"}
_STT_TLS = 6
_SHN_UNDEF, _SHN_ABS = 0, 0xFFF1
# Elf64_Sym / Elf32_Sym field orders, as (struct format, indexes of name, info, shndx, value, size)
_SYM64 = ("IBBHQQ", (0, 1, 3, 4, 5))
_SYM32 = ("IIIBBH", (0, 3, 5, 1, 2))


def read_symbols(elf: ELFFile, *, bias: int = 0, module: str | None = None,
                 origin: str = "", kinds: Collection[str] | None = None,
                 secondary: bool = False) -> list[Symbol]:
    """Defined function/object symbols of an ELF, at their runtime (biased) addresses;
    with ``kinds``, only those ("func", "object", "other"), the others never decoded (a
    vmlinux has 120k symbols; a 32-bit kernel's kallsyms lacks only its objects);
    ``secondary`` marks them as a separate debug file's (Symbol.secondary).

    .symtab holds the static functions too; .dynsym is what a stripped file
    still has. The table is unpacked in bulk (pyelftools' per-symbol parsing made
    opening a core with a big libc slower than gdb).
    """
    return [Symbol(name, value + (bias if not absolute else 0), size, kind, module, binding, secondary=secondary)
            for name, value, size, kind, binding, absolute in symbol_fields(elf, origin=origin, kinds=kinds)]


# one defined symbol: (name, value, size, kind, binding, whether it is absolute)
SymbolFields = tuple[str, int, int, str, str, bool]


def symbol_fields(elf: ELFFile, *, origin: str = "", kinds: Collection[str] | None = None) -> list[SymbolFields]:
    """read_symbols' symbols as plain fields at their link-time values, before any Symbol is
    made (a caller that learns the load offset from a few of them makes each Symbol once)."""
    try:
        table = _best_table(elf)
        if table is None:
            return []
        strtab = elf.get_section(table["sh_link"])
        raw = _section_bytes(elf, table)
        names = _section_bytes(elf, strtab)
        return list(_convert(raw, names, elf.elfclass, elf.little_endian, kinds))
    except (ELFError, ValueError, OSError, KeyError, AssertionError, struct.error) as err:
        raise FormatError(f"{origin or 'ELF file'}: bad symbol table: {err}") from None


def _best_table(elf: ELFFile) -> SymbolTableSection | None:
    for name in (".symtab", ".dynsym"):
        sec = elf.get_section_by_name(name)
        if isinstance(sec, SymbolTableSection) and sec.num_symbols() > 1:
            return sec
    return None


def _section_bytes(elf: ELFFile, section: Section) -> bytes:
    """The section's bytes, refusing a size the file cannot hold."""
    offset, size = section["sh_offset"], section["sh_size"]
    stream = elf.stream
    end = stream.seek(0, 2)
    if offset + size > end:
        raise ValueError(f"section {section.name} runs past the end of the file")
    stream.seek(offset)
    return stream.read(size)


def _convert(raw: bytes, names: bytes, elfclass: int, little: bool,
             kinds: Collection[str] | None = None) -> Iterator[SymbolFields]:
    fmt, (i_name, i_info, i_shndx, i_value, i_size) = _SYM64 if elfclass == 64 else _SYM32
    layout = struct.Struct(("<" if little else ">") + fmt)
    usable = len(raw) - len(raw) % layout.size
    for fields in layout.iter_unpack(raw[:usable]):
        info, shndx = fields[i_info], fields[i_shndx]
        kind = _KINDS.get(info & 0xF)
        # section/file symbols and imports name no code or data of this file;
        # a TLS symbol's value is an offset in the TLS block, not an address
        if kind is None or shndx == _SHN_UNDEF or info & 0xF == _STT_TLS:
            continue
        if kinds is not None and kind not in kinds:
            continue
        value = fields[i_value]
        # absolute symbols at 0 are version names (GLIBC_2.35) and markers, not addresses
        if shndx == _SHN_ABS and (kind == "other" or value == 0):
            continue
        start = fields[i_name]
        end = names.find(b"\0", start)
        if start == 0 or start >= len(names):
            continue
        name = names[start:end if end >= 0 else len(names)].decode("utf-8", "replace")
        # ARM/aarch64 mapping symbols ($x, $d) mark code/data runs, not names
        if not name or name.startswith("$"):
            continue
        # a default symbol version (memcpy@@GLIBC_2.14, in a debug file's .symtab) names the
        # function itself, as gdb prints it; a hidden one (memcpy@GLIBC_2.2.5) stays distinct
        at = name.find("@@")
        if at > 0:
            name = name[:at]
        yield name, value, fields[i_size], kind, _BINDINGS.get(info >> 4, "global"), shndx == _SHN_ABS
