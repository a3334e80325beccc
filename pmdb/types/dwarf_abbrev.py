"""pyelftools' abbrev tables, read without ``construct``.

pyelftools parses an abbrev table through ``construct``, several objects per attribute:
a vmlinux unit's table (hundreds of declarations) costs it 10-25 ms, and the first type
lookups of a DWARF-only kernel (686-pae) parse several. The declarations are plain
numbers, so the table is read by dwarf_scan's parse (the one the name index uses) and handed
to pyelftools in the shape its DIE parser reads (``decl['tag']``, ``decl['attr_spec']`` entries with
``name``, ``form`` and an implicit constant's ``value``), the names from pyelftools' own
enums (an unknown number stays a number, as pyelftools leaves it).
"""

from __future__ import annotations

from typing import Any

from elftools.construct.lib.container import Container
from elftools.dwarf.abbrevtable import AbbrevDecl, AbbrevTable
from elftools.dwarf.dwarfinfo import DWARFInfo
from elftools.dwarf.enums import ENUM_DW_AT, ENUM_DW_FORM, ENUM_DW_TAG

from pmdb.errors import FormatError
from pmdb.types.dwarf_scan import Abbrev, parse_abbrevs

_IMPLICIT_CONST = 0x21


def _names(enum: dict[str, Any]) -> dict[int, str]:
    """number -> name as pyelftools decodes it (of two names for a number, the later)."""
    return {value: name for name, value in enum.items() if isinstance(value, int)}


_TAGS, _ATTRS, _FORMS = _names(ENUM_DW_TAG), _names(ENUM_DW_AT), _names(ENUM_DW_FORM)


def read_table(data: Any, pos: int, end: int) -> dict[int, AbbrevDecl]:
    """code -> AbbrevDecl of the table at absolute ``pos`` of ``data`` (ending by ``end``):
    dwarf_scan's parse of it, named as pyelftools names it."""
    return {code: _declaration(code, ab) for code, ab in parse_abbrevs(data, pos, end).items()}


def _declaration(code: int, ab: Abbrev) -> AbbrevDecl:
    consts = iter(ab.consts)
    specs = []
    for at, form in ab.attrs:
        spec = Container(name=_ATTRS.get(at, at), form=_FORMS.get(form, form))
        if form == _IMPLICIT_CONST:
            spec.value = next(consts)
        specs.append(spec)
    return AbbrevDecl(code, Container(tag=_TAGS.get(ab.tag, ab.tag),
                                      children_flag="DW_CHILDREN_yes" if ab.children else "DW_CHILDREN_no",
                                      attr_spec=specs))


class FastAbbrevDWARFInfo(DWARFInfo):
    """pyelftools' DWARFInfo whose abbrev tables come from read_table. ``abbrev`` is
    (the mapping holding .debug_abbrev, its start in it, its size)."""

    def __init__(self, abbrev: tuple[Any, int, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._abbrev_at = abbrev

    def get_abbrev_table(self, offset: int) -> AbbrevTable:
        found = self._abbrevtable_cache.get(offset)
        if found is not None:
            return found
        data, start, size = self._abbrev_at
        if not 0 <= offset < size:
            raise FormatError(f"abbrev table offset {offset:#x} is outside .debug_abbrev")
        assert self.debug_abbrev_sec is not None        # __init__ was given it
        table = AbbrevTable.__new__(AbbrevTable)
        table.structs, table.stream, table.offset = self.structs, self.debug_abbrev_sec.stream, offset
        table._abbrev_map = read_table(data, start + offset, start + size)
        self._abbrevtable_cache[offset] = table
        return table
