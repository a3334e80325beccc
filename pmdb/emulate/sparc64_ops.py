"""SPARC V9 integer operations as specialised closures, built from small source templates.

Every decoded instruction becomes one closure ``f(npc) -> new_npc`` over the flat
register list ``r`` (slots below). A closure that annuls its delay slot returns
``~pc_to_run_next`` (a negative number), so the interpreter loop needs one compare
per instruction and no allocation. The templates are compiled once per operation
shape at import time (``_compile``); per instruction only a closure is made, with
register numbers and constants bound, so the hot path does no decoding, no
dict or attribute lookups, and masks to 64 bits only where a result can overflow.
"""

from __future__ import annotations

from collections.abc import Callable

# Register slots in the flat list ``r``: the current window, then control registers.
G0_SINK = 32            # writes to %g0 land here, so %g0 (slot 0) always reads 0
Y, CCR, ASI, FPRS = 33, 34, 35, 36
NSLOTS = 37
M64 = (1 << 64) - 1
W32 = 0xFFFFFFFF
SIGN64 = 1 << 63

SLOT_NAMES = tuple(f"{k}{i}" for k in "goli" for i in range(8)) + ("g0", "y", "ccr", "asi", "fprs")

Op = Callable[[int], int]


class GuestTrap(Exception):
    """Something the guest code did that ends a run (a Stop, never a pmdb error)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def compile_factory(src: str, **subst: str) -> Callable[..., Op]:
    """Compile one factory ``make(...)`` from a template, filling its ``$NAME`` holes."""
    for key in sorted(subst, key=len, reverse=True):
        src = src.replace("$" + key, subst[key])
    if "$" in src:
        raise AssertionError(f"unfilled template: {src}")
    ns: dict[str, object] = {}
    exec(compile(src, f"<sparc64 {src.split(chr(10), 2)[1].strip()[:40]}>", "exec"), ns)
    return ns["make"]  # type: ignore[return-value]


# -- plain ALU: r[d] = EXPR --------------------------------------------------------------

_ALU_SRC = """
def make(r, a, b, d):
    def f(npc):
        r[d] = $EXPR
        return npc + 4
    return f
"""

# Expressions over A (rs1 value) and B (rs2 value or the immediate, both unsigned 64-bit).
ALU_EXPR = {
    0x00: "($A + $B) & 0xFFFFFFFFFFFFFFFF",                  # add
    0x01: "$A & $B",                                         # and
    0x02: "$A | $B",                                         # or
    0x03: "$A ^ $B",                                         # xor
    0x04: "($A - $B) & 0xFFFFFFFFFFFFFFFF",                  # sub
    0x05: "$A & ($B ^ 0xFFFFFFFFFFFFFFFF)",                  # andn
    0x06: "$A | ($B ^ 0xFFFFFFFFFFFFFFFF)",                  # orn
    0x07: "$A ^ $B ^ 0xFFFFFFFFFFFFFFFF",                    # xnor
    0x08: "($A + $B + (r[34] & 1)) & 0xFFFFFFFFFFFFFFFF",    # addc
    0x09: "($A * $B) & 0xFFFFFFFFFFFFFFFF",                  # mulx
    0x0C: "($A - $B - (r[34] & 1)) & 0xFFFFFFFFFFFFFFFF",    # subc
}

# Shifts: register counts are masked here, immediate counts at decode time.
SHIFT_EXPR = {
    (0x25, 0): "($A << ($B & 31)) & 0xFFFFFFFFFFFFFFFF",     # sll
    (0x26, 0): "($A & 0xFFFFFFFF) >> ($B & 31)",             # srl
    (0x27, 0): "(((($A & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000) >> ($B & 31)) & 0xFFFFFFFFFFFFFFFF",
    (0x25, 1): "($A << ($B & 63)) & 0xFFFFFFFFFFFFFFFF",     # sllx
    (0x26, 1): "$A >> ($B & 63)",                            # srlx
    (0x27, 1): "((($A ^ 0x8000000000000000) - 0x8000000000000000) >> ($B & 63)) & 0xFFFFFFFFFFFFFFFF",
}


def _operands(expr: str, imm: bool) -> str:
    return expr.replace("$A", "r[a]").replace("$B", "b" if imm else "r[b]")


_ALU_RR = {op: compile_factory(_ALU_SRC, EXPR=_operands(e, False)) for op, e in ALU_EXPR.items()}
_ALU_RI = {op: compile_factory(_ALU_SRC, EXPR=_operands(e, True)) for op, e in ALU_EXPR.items()}
_SHIFT_RR = {k: compile_factory(_ALU_SRC, EXPR=_operands(e, False)) for k, e in SHIFT_EXPR.items()}
_SHIFT_RI = {k: compile_factory(_ALU_SRC, EXPR=_operands(e.replace(" & 31)", ")").replace(" & 63)", ")"), True))
             for k, e in SHIFT_EXPR.items()}
_MOV_R = compile_factory(_ALU_SRC, EXPR="r[b]")
_MOV_I = compile_factory(_ALU_SRC, EXPR="b")


def alu(op3: int, r: list[int], a: int, b: int, d: int, imm: bool) -> Op:
    """add/and/or/xor/sub/andn/orn/xnor/addc/mulx/subc; ``or %g0, x, rd`` becomes a move."""
    if op3 == 0x02 and a == 0:
        return (_MOV_I if imm else _MOV_R)(r, a, b, d)
    return (_ALU_RI if imm else _ALU_RR)[op3](r, a, b, d)


def shift(op3: int, x: int, r: list[int], a: int, b: int, d: int, imm: bool) -> Op:
    """sll/srl/sra (32-bit counts) and sllx/srlx/srax (64-bit counts)."""
    if imm:
        return _SHIFT_RI[(op3, x)](r, a, b & (63 if x else 31), d)
    return _SHIFT_RR[(op3, x)](r, a, b, d)


# -- condition codes: CCR = xcc(N Z V C) << 4 | icc(N Z V C) ----------------------------

_CC_SRC = """
def make(r, a, b, d):
    def f(npc):
        x = $A
        y = $B
$BODY
        return npc + 4
    return f
"""

_LOGIC_CC = """
        v = $EXPR
        r[d] = v
        w = v & 0xFFFFFFFF
        r[34] = ((v >> 56) & 0x80) | ((v == 0) << 6) | ((w >> 28) & 8) | ((w == 0) << 2)
"""

_ADD_CC = """
        s = x + y $CARRY
        v = s & 0xFFFFFFFFFFFFFFFF
        w = v & 0xFFFFFFFF
        t = (x & 0xFFFFFFFF) + (y & 0xFFFFFFFF) $CARRY
        r[d] = v
        r[34] = (((v >> 56) & 0x80) | ((v == 0) << 6) | ((((x ^ v) & (y ^ v)) >> 58) & 0x20)
                 | ((s >> 60) & 0x10) | ((w >> 28) & 8) | ((w == 0) << 2)
                 | ((((x ^ w) & (y ^ w)) >> 30) & 2) | (t >> 32))
"""

_SUB_CC = """
        s = x - y $CARRY
        v = s & 0xFFFFFFFFFFFFFFFF
        w = v & 0xFFFFFFFF
        t = (x & 0xFFFFFFFF) - (y & 0xFFFFFFFF) $CARRY
        r[d] = v
        r[34] = (((v >> 56) & 0x80) | ((v == 0) << 6) | ((((x ^ y) & (x ^ v)) >> 58) & 0x20)
                 | ((s < 0) << 4) | ((w >> 28) & 8) | ((w == 0) << 2)
                 | ((((x ^ y) & (x ^ w)) >> 30) & 2) | (t < 0))
"""

_LOGIC_OPS = {0x11: 0x01, 0x12: 0x02, 0x13: 0x03, 0x15: 0x05, 0x16: 0x06, 0x17: 0x07}


def _cc_bodies() -> dict[int, str]:
    bodies = {cc: _LOGIC_CC.replace("$EXPR", ALU_EXPR[op].replace("$A", "x").replace("$B", "y"))
              for cc, op in _LOGIC_OPS.items()}
    bodies[0x10] = _ADD_CC.replace("$CARRY", "")
    bodies[0x18] = _ADD_CC.replace("$CARRY", "+ (r[34] & 1)")
    bodies[0x14] = _SUB_CC.replace("$CARRY", "")
    bodies[0x1C] = _SUB_CC.replace("$CARRY", "- (r[34] & 1)")
    return bodies


_CC_RR = {op: compile_factory(_CC_SRC, A="r[a]", B="r[b]", BODY=body) for op, body in _cc_bodies().items()}
_CC_RI = {op: compile_factory(_CC_SRC, A="r[a]", B="b", BODY=body) for op, body in _cc_bodies().items()}
CC_OPS = frozenset(_CC_RR)


def alu_cc(op3: int, r: list[int], a: int, b: int, d: int, imm: bool) -> Op:
    """addcc/subcc (cmp)/andcc (btst)/orcc (tst)/... with and without carry."""
    return (_CC_RI if imm else _CC_RR)[op3](r, a, b, d)


def logic_ccr(v: int) -> int:
    """CCR for a result with V = C = 0 (multiplies, logic ops)."""
    w = v & W32
    return ((v >> 56) & 0x80) | ((v == 0) << 6) | ((w >> 28) & 8) | ((w == 0) << 2)


def _cond_table(cond: int) -> tuple[bool, ...]:
    """For each N Z V C nibble (N = 8 ... C = 1): does ``cond`` hold?"""
    out = []
    for nib in range(16):
        n, z, v, c = bool(nib & 8), bool(nib & 4), bool(nib & 2), bool(nib & 1)
        base = (False, z, z or n != v, n != v, c or z, c, n, v)[cond & 7]
        out.append(base != bool(cond & 8))
    return tuple(out)


COND_TABLES = tuple(_cond_table(c) for c in range(16))
COND_NAMES = ("n", "e", "le", "l", "leu", "cs", "neg", "vs", "a", "ne", "g", "ge", "gu", "cc",
              "pos", "vc")

# -- branches ---------------------------------------------------------------------------

_BCC_SRC = """
def make(r, t, tbl, sh):
    def f(npc):
        if tbl[(r[34] >> sh) & 15]:
            return t
        return $UNTAKEN
    return f
"""

_BR_SRC = """
def make(r, a, t):
    def f(npc):
        v = r[a]
        if $COND:
            return t
        return $UNTAKEN
    return f
"""

RCOND_EXPR = {1: "v == 0", 2: "v == 0 or v >= 0x8000000000000000", 3: "v >= 0x8000000000000000",
              5: "v != 0", 6: "0 < v < 0x8000000000000000", 7: "v < 0x8000000000000000"}
_UNTAKEN = {False: "npc + 4", True: "~(npc + 4)"}  # annulled: skip the delay slot

_BCC = {an: compile_factory(_BCC_SRC, UNTAKEN=u) for an, u in _UNTAKEN.items()}
_BR = {(rc, an): compile_factory(_BR_SRC, COND=e, UNTAKEN=u)
       for rc, e in RCOND_EXPR.items() for an, u in _UNTAKEN.items()}


def branch_cc(r: list[int], cond: int, xcc: bool, target: int, annul: bool) -> Op:
    """Bicc/BPcc; ``ba,a`` annuls its delay slot, ``bn,a`` skips it, ``bn`` is a nop."""
    if cond == 8:
        if annul:
            return lambda npc: ~target
        return lambda npc: target
    if cond == 0:
        if annul:
            return lambda npc: ~(npc + 4)
        return lambda npc: npc + 4
    return _BCC[annul](r, target, COND_TABLES[cond], 4 if xcc else 0)


def branch_reg(r: list[int], rcond: int, a: int, target: int, annul: bool) -> Op:
    """BPr: brz/brlez/brlz/brnz/brgz/brgez on a register."""
    return _BR[(rcond, annul)](r, a, target)


# -- conditional moves --------------------------------------------------------------------

_MOVCC_SRC = """
def make(r, b, d, tbl, sh):
    def f(npc):
        if tbl[(r[34] >> sh) & 15]:
            r[d] = $B
        return npc + 4
    return f
"""

_MOVR_SRC = """
def make(r, a, b, d):
    def f(npc):
        v = r[a]
        if $COND:
            r[d] = $B
        return npc + 4
    return f
"""

_MOVCC = {imm: compile_factory(_MOVCC_SRC, B="b" if imm else "r[b]") for imm in (False, True)}
_MOVR = {(rc, imm): compile_factory(_MOVR_SRC, COND=e, B="b" if imm else "r[b]")
         for rc, e in RCOND_EXPR.items() for imm in (False, True)}


def movcc(r: list[int], cond: int, xcc: bool, b: int, d: int, imm: bool) -> Op:
    return _MOVCC[imm](r, b, d, COND_TABLES[cond], 4 if xcc else 0)


def movr(r: list[int], rcond: int, a: int, b: int, d: int, imm: bool) -> Op:
    return _MOVR[(rcond, imm)](r, a, b, d)


# -- the rest: plain functions called from a generic closure (rare instructions) ----------

_CALL_SRC = """
def make(r, a, b, d, fn):
    def f(npc):
        r[d] = fn(r, r[a], $B)
        return npc + 4
    return f
"""

_CALL = {imm: compile_factory(_CALL_SRC, B="b" if imm else "r[b]") for imm in (False, True)}


def generic(fn: Callable[[list[int], int, int], int], r: list[int], a: int, b: int, d: int,
            imm: bool) -> Op:
    """r[d] = fn(r, A, B): for the divides, 32-bit multiplies, tagged adds, popc."""
    return _CALL[imm](r, a, b, d, fn)
