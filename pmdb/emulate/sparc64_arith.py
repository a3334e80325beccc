"""The rarer SPARC V9 integer operations as plain functions ``fn(r, A, B) -> rd value``.

Multiplies and divides that involve %y (umul, smul, udiv, sdiv and their cc forms),
64-bit divides, tagged arithmetic, mulscc and popc. They run through one generic
closure (sparc64_ops.generic); they are rare enough that a function call per
execution does not matter.
"""

from __future__ import annotations

from collections.abc import Callable

from pmdb.emulate.sparc64_ops import CCR, M64, SIGN64, W32, GuestTrap, Y, logic_ccr

Fn = Callable[[list[int], int, int], int]


def _s32(v: int) -> int:
    return ((v & W32) ^ 0x80000000) - 0x80000000


def _s64(v: int) -> int:
    return (v ^ SIGN64) - SIGN64


def _trunc_div(a: int, b: int) -> int:
    """Signed division rounding toward zero, as the hardware does."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def _zero(b: int, what: str) -> None:
    if b == 0:
        raise GuestTrap("fault", f"division by zero ({what})")


def add_ccr(x: int, y: int, s: int) -> int:
    """CCR after x + y = s (s unmasked, carry included)."""
    v, w, t = s & M64, s & W32, (x & W32) + (y & W32)
    return (((v >> 56) & 0x80) | ((v == 0) << 6) | ((((x ^ v) & (y ^ v)) >> 58) & 0x20)
            | ((s >> 60) & 0x10) | ((w >> 28) & 8) | ((w == 0) << 2)
            | ((((x ^ w) & (y ^ w)) >> 30) & 2) | (t >> 32))


def sub_ccr(x: int, y: int, s: int) -> int:
    """CCR after x - y = s (s unmasked)."""
    v, w, t = s & M64, s & W32, (x & W32) - (y & W32)
    return (((v >> 56) & 0x80) | ((v == 0) << 6) | ((((x ^ y) & (x ^ v)) >> 58) & 0x20)
            | ((s < 0) << 4) | ((w >> 28) & 8) | ((w == 0) << 2)
            | ((((x ^ y) & (x ^ w)) >> 30) & 2) | (t < 0))


def umul(r: list[int], a: int, b: int) -> int:
    p = (a & W32) * (b & W32)
    r[Y] = p >> 32
    return p


def smul(r: list[int], a: int, b: int) -> int:
    p = (_s32(a) * _s32(b)) & M64
    r[Y] = p >> 32
    return p


def udivx(r: list[int], a: int, b: int) -> int:
    _zero(b, "udivx")
    return a // b


def sdivx(r: list[int], a: int, b: int) -> int:
    _zero(b, "sdivx")
    return _trunc_div(_s64(a), _s64(b)) & M64


def _udiv32(r: list[int], a: int, b: int) -> tuple[int, bool]:
    _zero(b & W32, "udiv")
    q = (((r[Y] & W32) << 32) | (a & W32)) // (b & W32)
    return (W32, True) if q > W32 else (q, False)


def _sdiv32(r: list[int], a: int, b: int) -> tuple[int, bool]:
    _zero(b & W32, "sdiv")
    q = _trunc_div(_s64(((r[Y] & W32) << 32) | (a & W32)), _s32(b))
    if q > 0x7FFFFFFF:
        return 0x7FFFFFFF, True
    if q < -0x80000000:
        return -0x80000000 & M64, True
    return q & M64, False


def udiv(r: list[int], a: int, b: int) -> int:
    return _udiv32(r, a, b)[0]


def sdiv(r: list[int], a: int, b: int) -> int:
    return _sdiv32(r, a, b)[0]


def _div_cc(r: list[int], q: int, overflow: bool) -> int:
    r[CCR] = logic_ccr(q) | (2 if overflow else 0)
    return q


def udivcc(r: list[int], a: int, b: int) -> int:
    return _div_cc(r, *_udiv32(r, a, b))


def sdivcc(r: list[int], a: int, b: int) -> int:
    return _div_cc(r, *_sdiv32(r, a, b))


def umulcc(r: list[int], a: int, b: int) -> int:
    v = umul(r, a, b)
    r[CCR] = logic_ccr(v)
    return v


def smulcc(r: list[int], a: int, b: int) -> int:
    v = smul(r, a, b)
    r[CCR] = logic_ccr(v)
    return v


def _tagged(r: list[int], a: int, b: int, sub: bool, trap: bool) -> int:
    s = a - b if sub else a + b
    ccr = sub_ccr(a, b, s) if sub else add_ccr(a, b, s)
    if (a | b) & 3:
        ccr |= 2                          # icc.V: a tag bit was set
    if trap and ccr & 2:
        raise GuestTrap("fault", "tag overflow")
    r[CCR] = ccr
    return s & M64


def taddcc(r: list[int], a: int, b: int) -> int:
    return _tagged(r, a, b, False, False)


def tsubcc(r: list[int], a: int, b: int) -> int:
    return _tagged(r, a, b, True, False)


def taddcctv(r: list[int], a: int, b: int) -> int:
    return _tagged(r, a, b, False, True)


def tsubcctv(r: list[int], a: int, b: int) -> int:
    return _tagged(r, a, b, True, True)


def mulscc(r: list[int], a: int, b: int) -> int:
    """One step of the V8 shift-and-add multiply: icc and %y take part."""
    icc = r[CCR] & 15
    op1 = ((((icc >> 3) ^ (icc >> 1)) & 1) << 31) | ((a & W32) >> 1)
    op2 = (b & W32) if r[Y] & 1 else 0
    s = op1 + op2
    w = s & W32
    r[Y] = ((r[Y] & W32) >> 1) | ((a & 1) << 31)
    new = ((w >> 28) & 8) | ((w == 0) << 2) | ((((op1 ^ w) & (op2 ^ w)) >> 30) & 2) | (s >> 32)
    r[CCR] = (r[CCR] & 0xF0) | new
    return w


def popc(r: list[int], a: int, b: int) -> int:
    return b.bit_count()


# op3 -> function, for the arithmetic (op = 2) instructions that take this path.
ARITH_FNS: dict[int, Fn] = {
    0x0A: umul, 0x0B: smul, 0x0D: udivx, 0x0E: udiv, 0x0F: sdiv,
    0x1A: umulcc, 0x1B: smulcc, 0x1E: udivcc, 0x1F: sdivcc,
    0x20: taddcc, 0x21: tsubcc, 0x22: taddcctv, 0x23: tsubcctv, 0x24: mulscc,
    0x2D: sdivx, 0x2E: popc,
}
CC_FNS = frozenset((0x1A, 0x1B, 0x1E, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x24))
Y_FNS = frozenset((0x0A, 0x0B, 0x1A, 0x1B, 0x24))
