"""SPARC V9 loads, stores and atomics over the DemandPager's 8K pages (big-endian).

Plain loads and stores are templated closures (see sparc64_ops) that index the
pager's page dict directly: SPARC requires natural alignment, so an access never
crosses a page and one dict hit plus one ``unpack_from`` serves it. The rarer
forms (alternate-space, ldd/std, ldstub, swap, cas) go through ``GuestMemory``
methods. A store lands in the pager's copy of the page and is recorded in
``pager.writes`` exactly as ``DemandPager.write`` would record it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pmdb.emulate.pager import DemandPager
from pmdb.emulate.sparc64_ops import ASI, G0_SINK, M64, GuestTrap, Op, compile_factory
from pmdb.errors import FaultError, PmdbError

PAGE = 8192

_LOAD_SRC = """
def make(r, a, b, d, pages, load_page, misaligned, u):
    def f(npc):
        x = (r[a] + $B) & 0xFFFFFFFFFFFFFFFF
        $ALIGN
        try:
            pg = pages[x & -8192]
        except KeyError:
            pg = load_page(x)
        r[d] = $READ
        return npc + 4
    return f
"""

# The body of GuestMemory.store, inlined: stores are frequent in unoptimised code.
_STORE_SRC = """
def make(r, a, b, d, pages, load_page, misaligned, p, log, code_pages, on_code_write):
    def f(npc):
        x = (r[a] + $B) & 0xFFFFFFFFFFFFFFFF
        $ALIGN
        v = p(r[d] & $MASK)
        base = x & -8192
        try:
            pg = pages[base]
        except KeyError:
            pg = load_page(x, "write to")
        o = x & 8191
        pg[o:o + $SIZE] = v
        log((x, v))
        if base in code_pages:
            on_code_write(base)
        return npc + 4
    return f
"""

_ALIGN = {1: "pass", 2: "if x & 1: misaligned(x)", 4: "if x & 3: misaligned(x)",
          8: "if x & 7: misaligned(x)"}
# op3 -> (size, struct format, read expression)
LOADS = {
    0x00: (4, ">I", "u(pg, x & 8191)[0]"),                                   # lduw
    0x01: (1, ">B", "pg[x & 8191]"),                                         # ldub
    0x02: (2, ">H", "u(pg, x & 8191)[0]"),                                   # lduh
    0x08: (4, ">i", "u(pg, x & 8191)[0] & 0xFFFFFFFFFFFFFFFF"),              # ldsw
    0x09: (1, ">b", "((pg[x & 8191] ^ 0x80) - 0x80) & 0xFFFFFFFFFFFFFFFF"),  # ldsb
    0x0A: (2, ">h", "u(pg, x & 8191)[0] & 0xFFFFFFFFFFFFFFFF"),              # ldsh
    0x0B: (8, ">Q", "u(pg, x & 8191)[0]"),                                   # ldx
}
STORES = {0x04: (4, ">I"), 0x05: (1, ">B"), 0x06: (2, ">H"), 0x0E: (8, ">Q")}  # stw stb sth stx

_LOAD = {(op, imm): compile_factory(_LOAD_SRC, B="b" if imm else "r[b]", ALIGN=_ALIGN[size], READ=rd)
         for op, (size, _, rd) in LOADS.items() for imm in (False, True)}
_STORE = {(op, imm): compile_factory(_STORE_SRC, B="b" if imm else "r[b]", ALIGN=_ALIGN[size],
                                     MASK=hex((1 << (8 * size)) - 1), SIZE=str(size))
          for op, (size, _) in STORES.items() for imm in (False, True)}

# User-visible ASIs: primary/secondary (and "as if user"), no-fault, little-endian (bit 3).
_ASI_OK = frozenset((0x10, 0x11, 0x18, 0x19, 0x80, 0x81, 0x82, 0x83, 0x88, 0x89, 0x8A, 0x8B))
_ASI_NOFAULT = frozenset((0x82, 0x83, 0x8A, 0x8B))


class GuestMemory:
    """The guest's view of the pager: page hits, faults as GuestTraps, recorded stores."""

    def __init__(self, pager: DemandPager, on_code_write: Callable[[int], None]) -> None:
        if pager.page_size != PAGE:
            raise PmdbError(f"SPARC emulation needs 8K pages, the pager has {pager.page_size}")
        self.pager = pager
        self.pages = pager.pages
        self.code_pages: set[int] = set()
        self.on_code_write = on_code_write
        self.store = self._make_store()

    def load_page(self, x: int, what: str = "read from") -> bytearray:
        try:
            return self.pager.page(x)
        except FaultError:
            raise GuestTrap("fault", f"{what} unmapped page {x & -PAGE:#x} (address {x:#x})") from None

    @staticmethod
    def misaligned(x: int) -> None:
        raise GuestTrap("fault", f"misaligned access at {x:#x} (mem_address_not_aligned)")

    def _make_store(self) -> Callable[[int, bytes], None]:
        pages, code_pages, load_page = self.pages, self.code_pages, self.load_page
        log = self.pager.writes.append
        on_code_write = self.on_code_write

        def store(x: int, data: bytes) -> None:
            base = x & -PAGE
            try:
                pg = pages[base]
            except KeyError:
                pg = load_page(x, "write to")
            o = x & (PAGE - 1)
            pg[o:o + len(data)] = data
            log((x, data))
            if base in code_pages:
                on_code_write(base)
        return store

    # -- the slow, general forms -----------------------------------------------------------

    def get(self, x: int, size: int, signed: bool = False, little: bool = False) -> int:
        if x & (size - 1):
            self.misaligned(x)
        try:
            pg = self.pages[x & -PAGE]
        except KeyError:
            pg = self.load_page(x)
        o = x & (PAGE - 1)
        v = int.from_bytes(pg[o:o + size], "little" if little else "big", signed=signed)
        return v & M64

    def put(self, x: int, size: int, value: int, little: bool = False) -> None:
        if x & (size - 1):
            self.misaligned(x)
        self.store(x, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little" if little else "big"))


def load(op3: int, r: list[int], mem: GuestMemory, a: int, b: int, d: int, imm: bool) -> Op:
    fmt = LOADS[op3][1]
    return _LOAD[(op3, imm)](r, a, b, d, mem.pages, mem.load_page, mem.misaligned,
                             struct.Struct(fmt).unpack_from)


def store(op3: int, r: list[int], mem: GuestMemory, a: int, b: int, d: int, imm: bool) -> Op:
    return _STORE[(op3, imm)](r, a, b, d, mem.pages, mem.load_page, mem.misaligned,
                              struct.Struct(STORES[op3][1]).pack, mem.pager.writes.append,
                              mem.code_pages, mem.on_code_write)


def _asi_of(r: list[int], word: int, imm: bool) -> Callable[[], int]:
    if imm:
        return lambda: r[ASI]
    fixed = (word >> 5) & 0xFF
    return lambda: fixed


def _check_asi(asi: int) -> None:
    if asi not in _ASI_OK:
        raise GuestTrap("unimplemented", f"alternate space {asi:#x} is not emulated "
                                         "(only primary/secondary, no-fault, little-endian)")


def load_alt(op3: int, r: list[int], mem: GuestMemory, word: int, a: int, b: int, d: int,
             imm: bool) -> Op:
    """lduwa/ldxa/...: the ASI picks byte order and whether a fault reads as 0."""
    size, fmt, _ = LOADS[op3 & 0xF]
    signed = fmt[1].islower()
    asi_of = _asi_of(r, word, imm)

    def f(npc: int) -> int:
        asi = asi_of()
        _check_asi(asi)
        x = (r[a] + (b if imm else r[b])) & M64
        try:
            r[d] = mem.get(x, size, signed, bool(asi & 8))
        except GuestTrap:
            if asi not in _ASI_NOFAULT:
                raise
            r[d] = 0
        return npc + 4
    return f


def store_alt(op3: int, r: list[int], mem: GuestMemory, word: int, a: int, b: int, d: int,
              imm: bool) -> Op:
    size = STORES[op3 & 0xF][0]
    asi_of = _asi_of(r, word, imm)

    def f(npc: int) -> int:
        asi = asi_of()
        _check_asi(asi)
        if asi in _ASI_NOFAULT:
            raise GuestTrap("fault", f"store to no-fault ASI {asi:#x}")
        mem.put((r[a] + (b if imm else r[b])) & M64, size, r[d], bool(asi & 8))
        return npc + 4
    return f


def special(op3: int, r: list[int], mem: GuestMemory, word: int, a: int, b: int, d: int,
            imm: bool) -> Op | None:
    """ldd/std, ldstub, swap, casa/casxa (and their ASI forms); None if op3 is none of them.

    ``d`` is the raw rd field here: these read rd as well as write it.
    """
    alt = bool(op3 & 0x10) and op3 < 0x20
    asi_of = _asi_of(r, word, imm) if alt or op3 in (0x3C, 0x3E) else (lambda: 0x80)

    def addr() -> tuple[int, bool]:
        asi = asi_of()
        _check_asi(asi)
        if op3 in (0x3C, 0x3E):       # cas: address is rs1 alone, rs2 is the comparand
            return r[a], bool(asi & 8)
        return (r[a] + (b if imm else r[b])) & M64, bool(asi & 8)

    kind = op3 & 0xF if op3 < 0x20 else op3
    if kind in (0x03, 0x07) and d & 1:
        return None                   # ldd/std need an even register pair: illegal
    ops: dict[int, Callable[[], None]] = {
        0x03: lambda: _ldd(r, mem, d, *addr()),
        0x07: lambda: _std(r, mem, d, *addr()),
        0x0D: lambda: _ldstub(r, mem, d, *addr()),
        0x0F: lambda: _swap(r, mem, d, *addr()),
        0x3C: lambda: _cas(r, mem, d, b, 4, *addr()),
        0x3E: lambda: _cas(r, mem, d, b, 8, *addr()),
    }
    body = ops.get(kind)
    if body is None:
        return None

    def f(npc: int) -> int:
        body()
        return npc + 4
    return f


def _ldd(r: list[int], mem: GuestMemory, d: int, x: int, little: bool) -> None:
    if x & 7:
        mem.misaligned(x)
    hi, lo = mem.get(x, 4, False, little), mem.get(x + 4, 4, False, little)
    r[d or G0_SINK], r[d + 1] = hi, lo


def _std(r: list[int], mem: GuestMemory, d: int, x: int, little: bool) -> None:
    if x & 7:
        mem.misaligned(x)
    mem.put(x, 4, r[d], little)
    mem.put(x + 4, 4, r[d + 1], little)


def _ldstub(r: list[int], mem: GuestMemory, d: int, x: int, little: bool) -> None:
    old = mem.get(x, 1)
    mem.put(x, 1, 0xFF)
    r[d or G0_SINK] = old


def _swap(r: list[int], mem: GuestMemory, d: int, x: int, little: bool) -> None:
    old = mem.get(x, 4, False, little)
    mem.put(x, 4, r[d], little)
    r[d or G0_SINK] = old


def _cas(r: list[int], mem: GuestMemory, d: int, s2: int, size: int, x: int, little: bool) -> None:
    old = mem.get(x, size, False, little)
    if old == r[s2] & ((1 << (8 * size)) - 1):
        mem.put(x, size, r[d], little)
    r[d or G0_SINK] = old
