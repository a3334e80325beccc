"""A fast scan of .debug_info's top-level DIEs: names of types and variables -> DIE offsets.

pyelftools builds an object per DIE and per attribute through ``construct``: indexing a
distribution's vmlinux that way (~170 MB of .debug_info, millions of DIEs) takes many
minutes. Only the top-level DIEs of each compile unit carry the names a type query needs,
and GCC gives every DIE with children a ``DW_AT_sibling``, so the scan reads the abbrev
tables, then walks each unit's top level, skipping attributes by their form and jumping
over subtrees. Skipping code is generated once per distinct abbrev *shape* (tag,
children, attribute forms), which the thousands of per-unit abbrev tables share.

Every step is bounded: a position that does not move forward, a sibling outside its unit,
an unknown abbrev code or form becomes FormatError, so a corrupt file never loops.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pmdb.errors import FormatError

# DW_TAG_* indexed, and the kind each becomes
STRUCT, UNION, ENUM, PLAIN, VARIABLE = 1, 2, 3, 4, 5
_KINDS = {0x13: STRUCT, 0x02: STRUCT, 0x17: UNION, 0x04: ENUM, 0x16: PLAIN, 0x24: PLAIN,
          0x34: VARIABLE}
KIND_NAMES = {STRUCT: "struct", UNION: "union", ENUM: "enum"}
# DW_AT_*
_AT_SIBLING, _AT_NAME, _AT_DECLARATION, _AT_EXTERNAL = 0x01, 0x03, 0x3C, 0x3F
_FORM_STRING, _FORM_STRP, _FORM_IMPLICIT_CONST, _FORM_INDIRECT = 0x08, 0x0E, 0x21, 0x16
_LEB_FORMS = (0x0D, 0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23, 0x1F01, 0x1F02)
_REF_FORMS = {0x11: 1, 0x12: 2, 0x13: 4, 0x14: 8}           # unit-relative references
_FLAG, _FLAG_PRESENT = 0x0C, 0x19
DECLARATION, EXTERNAL = 1, 2                                 # flags of an entry
_U16 = {True: "<H", False: ">H"}
_U32 = {True: "<I", False: ">I"}
_U64 = {True: "<Q", False: ">Q"}


def _fixed_size(form: int, offset_size: int, address_size: int, version: int) -> int | None:
    """Bytes a fixed-size form takes; None for a variable-size one."""
    sizes = {0x01: address_size, 0x05: 2, 0x06: 4, 0x07: 8, 0x0B: 1, 0x0C: 1, 0x0E: offset_size,
             0x10: offset_size if version >= 3 else address_size, 0x11: 1, 0x12: 2, 0x13: 4,
             0x14: 8, 0x17: offset_size, 0x19: 0, 0x1C: 4, 0x1D: offset_size, 0x1E: 16,
             0x1F: offset_size, 0x20: 8, 0x21: 0, 0x24: 8, 0x25: 1, 0x26: 2, 0x27: 3, 0x28: 4,
             0x29: 1, 0x2A: 2, 0x2B: 3, 0x2C: 4, 0x1F20: offset_size, 0x1F21: offset_size}
    return sizes.get(form)


@dataclass(frozen=True)
class Abbrev:
    tag: int
    children: bool
    attrs: tuple[tuple[int, int], ...]       # (DW_AT, DW_FORM)
    # the values of its DW_FORM_implicit_const attributes, in order: the table holds them,
    # the DIEs take no bytes for them (so they never make two abbrevs step differently)
    consts: tuple[int, ...] = field(default=(), compare=False)


@dataclass
class Shape:
    """How to step over one abbrev's attributes: a constant size, or generated code
    returning (next position, name (see _string) or -1, sibling, flags)."""

    kind: int
    children: bool
    fixed: int                                  # >= 0 when a constant size is enough
    step: Callable[[Any, int], tuple[int, int, int, int]] | None
    source: str = ""                            # step's code (abbrevs that step alike share it)


def parse_abbrevs(data: Any, pos: int, end: int) -> dict[int, Abbrev]:
    """One abbrev table (at absolute ``pos`` of ``data``). Nearly every number in it is one
    byte, so that case is read inline: the kernel has thousands of tables."""
    table: dict[int, Abbrev] = {}
    try:
        while True:
            code = data[pos]
            pos += 1
            if code >= 0x80:
                code, pos = uleb(data, pos - 1, end)
            if code == 0:
                return table
            tag = data[pos]
            pos += 1
            if tag >= 0x80:
                tag, pos = uleb(data, pos - 1, end)
            children = data[pos] == 1
            pos += 1
            attrs = []
            consts = []
            while True:
                at, form = data[pos], data[pos + 1]
                pos += 2
                if at >= 0x80 or form >= 0x80:
                    at, pos = uleb(data, pos - 2, end)
                    form, pos = uleb(data, pos, end)
                if at == 0 and form == 0:
                    break
                if form == _FORM_IMPLICIT_CONST:
                    value, pos = sleb(data, pos, end)     # in the table: 0 bytes per DIE
                    consts.append(value)
                attrs.append((at, form))
            if pos > end:
                raise IndexError
            table[code] = Abbrev(tag, children, tuple(attrs), tuple(consts))
    except IndexError:
        raise FormatError("abbrev table runs past .debug_abbrev") from None


def uleb(data: Any, pos: int, end: int) -> tuple[int, int]:
    """An unsigned LEB128 at pos: (value, position after it); FormatError past end."""
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise FormatError("LEB128 number runs past its section")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def sleb(data: Any, pos: int, end: int) -> tuple[int, int]:
    """A signed LEB128 at pos: (value, position after it); FormatError past end."""
    value, after = uleb(data, pos, end)
    bits = 7 * (after - pos)
    if value >> (bits - 1) & 1:
        value -= 1 << bits
    return value, after


class ShapeCompiler:
    """Makes (and memoizes) the step function of each abbrev shape for one unit format."""

    def __init__(self, little: bool) -> None:
        self.little = little
        self._shapes: dict[tuple[Abbrev, int, int, int], Shape] = {}
        self._by_steps: dict[tuple[Any, ...], Shape] = {}

    def shape(self, abbrev: Abbrev, offset_size: int, address_size: int, version: int) -> Shape:
        key = (abbrev, offset_size, address_size, version)
        hit = self._shapes.get(key)
        if hit is None:
            kind, wanted, sizes = self.plan(abbrev, offset_size, address_size, version)
            # abbrevs that differ only in what is skipped, not in how, share one step function
            # (a unit's 16 first tables: 477 abbrevs, 197 ways of stepping)
            steps = (kind, abbrev.children, offset_size, *_steps(abbrev, wanted, sizes))
            hit = self._by_steps.get(steps)
            if hit is None:
                hit = self._by_steps[steps] = self._compile(abbrev, kind, wanted, sizes, offset_size)
            self._shapes[key] = hit
        return hit

    @staticmethod
    def plan(ab: Abbrev, osize: int, asize: int, version: int) -> tuple[int, set[int], list[int | None]]:
        """(the kind indexed, the attributes read, each attribute's fixed size or None)."""
        kind = _KINDS.get(ab.tag, 0)
        wanted = {_AT_SIBLING} if ab.children else set()
        if kind:
            wanted |= {_AT_NAME, _AT_DECLARATION, _AT_EXTERNAL}
        return kind, wanted, [_fixed_size(form, osize, asize, version) for _, form in ab.attrs]

    def _compile(self, ab: Abbrev, kind: int, wanted: set[int], sizes: list[int | None], osize: int) -> Shape:
        if not any(at in wanted for at, _ in ab.attrs) and all(s is not None for s in sizes):
            return Shape(kind, ab.children, sum(s or 0 for s in sizes), None)
        source = self.source(ab, wanted, sizes, osize)
        env: dict[str, Any] = {"unpack_from": struct.unpack_from, "U16": _U16[self.little],
                               "U32": _U32[self.little], "U64": _U64[self.little], "uleb": _uleb_fast}
        exec(source, env)          # noqa: S102 -- code built from the fixed pieces below
        return Shape(kind, ab.children, -1, env["step"], source)

    def source(self, ab: Abbrev, wanted: set[int], sizes: list[int | None], osize: int) -> str:
        """The code of ab's step function: read the wanted attributes, skip the others."""
        if any(form == _FORM_INDIRECT for _, form in ab.attrs):
            raise FormatError("DW_FORM_indirect is not supported")
        lines = ["def step(d, p):", "    nm = -1; sb = 0; fl = 0"]
        off = 0                               # fixed bytes not yet added to p
        for (at, form), size in zip(ab.attrs, sizes, strict=True):
            if at in wanted:
                lines += self._capture(at, form, off, osize)
            if size is not None:
                off += size
                continue
            if off:
                lines.append(f"    p += {off}")
                off = 0
            lines += self._skip(form)
        lines.append(f"    return p + {off}, nm, sb, fl")
        return "\n".join(lines)

    def _capture(self, at: int, form: int, off: int, osize: int) -> list[str]:
        here = f"p + {off}" if off else "p"
        if at == _AT_SIBLING and form in _REF_FORMS:
            fmt = {1: None, 2: "U16", 4: "U32", 8: "U64"}[_REF_FORMS[form]]
            return [f"    sb = d[{here}]"] if fmt is None else [f"    sb = unpack_from({fmt}, d, {here})[0]"]
        if at in (_AT_DECLARATION, _AT_EXTERNAL):
            bit = DECLARATION if at == _AT_DECLARATION else EXTERNAL
            if form == _FLAG_PRESENT or form == _FORM_IMPLICIT_CONST:
                return [f"    fl |= {bit}"]
            if form == _FLAG:
                return [f"    fl |= {bit} if d[{here}] else 0"]
            return []
        if at == _AT_NAME:
            if form == _FORM_STRP:
                return [f"    nm = unpack_from({'U32' if osize == 4 else 'U64'}, d, {here})[0]"]
            if form == _FORM_STRING:
                return [f"    nm = -3 - ({here})"]          # inline: -3 - its position
        return []                 # DW_FORM_strx* (clang's DWARF 5) names are not indexed

    def _skip(self, form: int) -> list[str]:
        if form == _FORM_STRING:
            return ["    p = d.find(b'\\0', p) + 1", "    if p <= 0: raise IndexError"]
        if form in _LEB_FORMS:
            return ["    while d[p] & 0x80: p += 1", "    p += 1"]
        if form == 0x0A:
            return ["    p += 1 + d[p]"]
        if form == 0x03:
            return ["    p += 2 + unpack_from(U16, d, p)[0]"]
        if form == 0x04:
            return ["    p += 4 + unpack_from(U32, d, p)[0]"]
        if form in (0x09, 0x18):
            return ["    n, p = uleb(d, p)", "    p += n"]
        raise FormatError(f"unknown DWARF form {form:#x}")


def _steps(ab: Abbrev, wanted: set[int], sizes: list[int | None]) -> list[Any]:
    """What a step function does, attribute by attribute: read a wanted one ((DW_AT, DW_FORM)),
    skip a variable-size one (its DW_FORM), skip a run of fixed-size ones (minus their total
    bytes: negative, so never taken for a form)."""
    out: list[Any] = []
    run = 0
    for (at, form), size in zip(ab.attrs, sizes, strict=True):
        if at in wanted:
            if run:
                out.append(-run)
                run = 0
            out.append((at, form))
            run += size or 0
            if size is None:
                out.append(form)
        elif size is not None:
            run += size
        else:
            if run:
                out.append(-run)
                run = 0
            out.append(form)
    if run:
        out.append(-run)
    return out


def _uleb_fast(d: Any, p: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = d[p]
        p += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, p
        shift += 7
        if shift > 63:
            raise IndexError("LEB128 too long")


@dataclass
class Unit:
    """One unit's header, in absolute positions of the scanned buffer."""

    start: int               # the unit header
    dies: int                # the first DIE
    end: int
    version: int
    offset_size: int
    address_size: int
    abbrev_offset: int
    kind: int = 1            # DW_UT_*: 1 compile, 3 partial; others are not indexed


def units(data: Any, base: int, size: int, little: bool, start: int = 0) -> Iterator[Unit]:
    """The unit headers of a .debug_info at absolute ``base`` of ``data``, from the unit at
    offset ``start`` of it (a scan resumed where an earlier one stopped)."""
    pos, end = base + start, base + size
    u16, u32, u64 = _U16[little], _U32[little], _U64[little]
    while pos + 11 <= end:
        length = struct.unpack_from(u32, data, pos)[0]
        osize, head = 4, pos + 4
        if length == 0xFFFFFFFF:
            length, osize, head = struct.unpack_from(u64, data, head)[0], 8, head + 8
        unit_end = head + length
        if length < 7 or unit_end > end:
            raise FormatError(f"unit at {pos - base:#x} runs past .debug_info")
        version = struct.unpack_from(u16, data, head)[0]
        ofmt = u32 if osize == 4 else u64
        if version >= 5:
            kind, asize = data[head + 2], data[head + 3]
            abbrev = struct.unpack_from(ofmt, data, head + 4)[0]
            dies = head + 4 + osize + ({2: 8 + osize, 6: 8 + osize, 4: 8, 5: 8}.get(kind, 0))
        elif 2 <= version <= 4:
            kind = 1
            abbrev = struct.unpack_from(ofmt, data, head + 2)[0]
            asize, dies = data[head + 2 + osize], head + 3 + osize
        else:
            raise FormatError(f"unit at {pos - base:#x} has DWARF version {version}")
        yield Unit(pos, dies, unit_end, version, osize, asize, abbrev, kind)
        pos = unit_end


# (kind, name: its position in .debug_str, or its bytes) -> (DIE offset, flags)
Found = dict[tuple[int, int | bytes], tuple[int, int]]


def names(data: Any, found: Found) -> dict[int, dict[str, int]]:
    """kind -> name -> DIE offset, from the scan's keys (see named)."""
    out: dict[int, dict[str, int]] = {}
    for (kind, name), (offset, _flags) in named(data, found).items():
        out.setdefault(kind, {})[name] = offset
    return out


def named(data: Any, found: Found) -> dict[tuple[int, str], tuple[int, int]]:
    """(kind, name) -> (DIE offset, flags), from the scan's keys: each .debug_str name read
    once; a name found both there and inline keeps the better DIE."""
    best: dict[tuple[int, bytes], tuple[int, int]] = {}
    for (kind, at), (offset, flags) in found.items():
        if isinstance(at, int):
            stop = data.find(b"\0", at, at + 4096)
            if stop < 0:
                raise FormatError(f"unterminated DWARF name at {at:#x}")
            at = data[at:stop]
        key = (kind, at)
        old = best.get(key)
        if old is None or better(old, flags):
            best[key] = (offset, flags)
    return {(kind, raw.decode("utf-8", "replace")): entry for (kind, raw), entry in best.items() if raw}


def better(old: tuple[int, int], flags: int) -> bool:
    """Whether a DIE with ``flags`` should replace ``old`` for its name: a definition over a
    declaration (a struct's members are in its definition), an external variable over a
    file's static one."""
    was = old[1]
    if was & DECLARATION and not flags & DECLARATION:
        return True
    return bool(flags & EXTERNAL and not was & EXTERNAL)


@dataclass
class Sections:
    """Where the scanned sections lie in ``data`` (absolute offsets and sizes)."""

    info: tuple[int, int]
    abbrev: tuple[int, int]
    str: tuple[int, int]
    little: bool = True
    compiler: ShapeCompiler = field(init=False)

    def __post_init__(self) -> None:
        self.compiler = ShapeCompiler(self.little)


def scan_unit(data: Any, sec: Sections, unit: Unit, tables: dict[int, dict[int, Abbrev]],
              found: Found) -> None:
    """Add the named top-level DIEs of one unit to ``found`` (subtrees are jumped over)."""
    if unit.kind not in (1, 3):
        return
    abase, asize = sec.abbrev
    if unit.abbrev_offset >= asize:
        raise FormatError(f"unit at {unit.start - sec.info[0]:#x}: abbrev offset past .debug_abbrev")
    table = tables.get(unit.abbrev_offset)
    if table is None:
        table = parse_abbrevs(data, abase + unit.abbrev_offset, abase + asize)
        tables.clear()          # units rarely share a table: keeping them all cost ~150 MB
        tables[unit.abbrev_offset] = table
    compiler = sec.compiler
    shapes = {code: compiler.shape(ab, unit.offset_size, unit.address_size, unit.version)
              for code, ab in table.items()}
    try:
        end = _walk(data, sec, unit, shapes, found)
    except (IndexError, KeyError, struct.error) as err:
        raise FormatError(f"unit at {unit.start - sec.info[0]:#x}: bad DIE ({type(err).__name__})") from None
    if end > unit.end:
        raise FormatError(f"unit at {unit.start - sec.info[0]:#x}: DIEs run past its end")


def _walk(data: Any, sec: Sections, unit: Unit, shapes: dict[int, Shape], found: Found) -> int:
    """The unit's DIE loop (hot: kept flat); returns where it stopped."""
    info_base = sec.info[0]
    str_base, str_size = sec.str
    p, end, depth = unit.dies, unit.end, 0
    while p < end:
        at = p
        code = data[p]
        p += 1
        if code >= 0x80:
            code, p = uleb(data, at, end)
        if code == 0:
            depth -= 1
            if depth <= 0:
                return p
            continue
        shape = shapes[code]
        if shape.step is None:
            p += shape.fixed
            if shape.children:
                depth += 1
            continue
        p, nm, sb, fl = shape.step(data, p)
        if depth == 1 and shape.kind and nm != -1:
            # a .debug_str name is keyed by its position, not its text: the linker merged the
            # section, so one name is one position (read once, by names()); an inline one is
            # read here, while its page is in memory
            if nm >= 0:
                if nm >= str_size:
                    raise FormatError(f"DIE at {at - info_base:#x}: string offset past .debug_str")
                key: tuple[int, int | bytes] = (shape.kind, nm + str_base)
            else:
                nm = -3 - nm
                stop = data.find(b"\0", nm, nm + 4096)
                if stop < 0:
                    raise FormatError(f"DIE at {at - info_base:#x}: unterminated name")
                key = (shape.kind, data[nm:stop])
            old = found.get(key)
            if old is None or better(old, fl):
                found[key] = (at - info_base, fl)
        if shape.children:
            if sb and depth >= 1:
                target = unit.start + sb
                if not p <= target <= end:
                    raise FormatError(f"DIE at {at - info_base:#x}: sibling outside its unit")
                p = target
            else:
                depth += 1
    return p
