"""ELF symbol tables (.symtab, else .dynsym) turned into pmdb Symbols.

pyelftools does the parsing; its errors are translated to FormatError here so
a damaged library gives one line instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from pmdb.errors import FormatError
from pmdb.symbols.table import Symbol

_KINDS = {"STT_FUNC": "func", "STT_GNU_IFUNC": "func", "STT_OBJECT": "object",
          "STT_TLS": "object", "STT_COMMON": "object", "STT_NOTYPE": "other"}
_BINDINGS = {"STB_GLOBAL": "global", "STB_LOCAL": "local", "STB_WEAK": "weak",
             "STB_GNU_UNIQUE": "global"}


def read_symbols(elf: ELFFile, *, bias: int = 0, module: str | None = None,
                 origin: str = "") -> list[Symbol]:
    """Defined function/object symbols of an ELF, at their runtime (biased) addresses.

    .symtab holds the static functions too; .dynsym is what a stripped file
    still has.
    """
    try:
        table = _best_table(elf)
        if table is None:
            return []
        return list(_convert(table, bias, module))
    except (ELFError, ValueError, OSError, KeyError, AssertionError) as err:
        raise FormatError(f"{origin or 'ELF file'}: bad symbol table: {err}") from None


def _best_table(elf: ELFFile) -> SymbolTableSection | None:
    for name in (".symtab", ".dynsym"):
        sec = elf.get_section_by_name(name)
        if isinstance(sec, SymbolTableSection) and sec.num_symbols() > 1:
            return sec
    return None


def _convert(table: SymbolTableSection, bias: int, module: str | None) -> Iterator[Symbol]:
    for sym in table.iter_symbols():
        info = sym["st_info"]
        kind = _KINDS.get(info["type"])
        shndx = sym["st_shndx"]
        # section/file symbols and imports name no code or data of this file
        if kind is None or not sym.name or shndx == "SHN_UNDEF":
            continue
        # absolute symbols at 0 are version names (GLIBC_2.35) and markers, not addresses
        if shndx == "SHN_ABS" and (kind == "other" or sym["st_value"] == 0):
            continue
        # a TLS symbol's value is an offset in the TLS block, not an address
        if info["type"] == "STT_TLS":
            continue
        # ARM/aarch64 mapping symbols ($x, $d) mark code/data runs, not names
        if sym.name.startswith("$"):
            continue
        addr = sym["st_value"] + (bias if shndx != "SHN_ABS" else 0)
        yield Symbol(sym.name, addr, sym["st_size"], kind, module,
                     _BINDINGS.get(info["bind"], "global"))
