"""x87, SSE and AVX registers of an x86 thread, from a core's NT_PRFPREG / NT_PRXFPREG /
NT_X86_XSTATE notes, named and valued as gdb's ``info all-registers`` shows them.

All three hold the FXSAVE image (x86-64's NT_PRFPREG, i386's NT_PRXFPREG, and the first
512 bytes of the XSAVE area); i386's NT_PRFPREG is the older FSAVE layout and is not
needed when the FXSAVE one is there. FXSAVE keeps an abridged tag byte (one bit a
register); gdb shows the full x87 tag word, rebuilt here the way the FPU would: empty,
or the class of the register's contents. AVX's upper halves follow in the XSAVE area
(standard format, offset 576) when its header's XSTATE_BV says they were saved.
"""

from __future__ import annotations

import struct

NT_PRFPREG = 2
NT_PRXFPREG = 0x46E62B7F
NT_X86_XSTATE = 0x202

FXSAVE_SIZE = 512
_XSTATE_BV = 512          # the XSAVE header's first word
_YMM_HI = 576             # the AVX state component, standard (non-compacted) format
_AVX = 1 << 2


def fp_register_names(bits: int, avx: bool) -> list[str]:
    """gdb's order: st0-7, the x87 control registers, xmm0-N, mxcsr, then ymm0-N."""
    n = 16 if bits == 64 else 8
    names = [f"st{i}" for i in range(8)]
    names += ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"]
    names += [f"xmm{i}" for i in range(n)] + ["mxcsr"]
    if avx:
        names += [f"ymm{i}" for i in range(n)]
    return names


def decode_fxsave(data: bytes, bits: int, xstate: bytes | None = None) -> dict[str, int]:
    """The registers of one FXSAVE image (and the AVX halves of an XSAVE area), as integers:
    st registers as their 80 raw bits, xmm 128 bits, ymm 256 bits."""
    if len(data) < FXSAVE_SIZE:
        return {}
    fctrl, fstat, abridged, fop = struct.unpack_from("<HHBxH", data, 0)
    regs: dict[str, int] = {"fctrl": fctrl, "fstat": fstat, "fop": fop & 0x7FF}
    regs["fioff"], regs["fiseg"], regs["fooff"], regs["foseg"], regs["mxcsr"] = \
        struct.unpack_from("<IIIII", data, 8)
    raw = [int.from_bytes(data[32 + 16 * i:42 + 16 * i], "little") for i in range(8)]
    for i in range(8):
        regs[f"st{i}"] = raw[i]
    regs["ftag"] = _full_tag(abridged, fstat, raw)
    n = 16 if bits == 64 else 8
    for i in range(n):
        regs[f"xmm{i}"] = int.from_bytes(data[160 + 16 * i:176 + 16 * i], "little")
    if xstate is not None and len(xstate) >= _YMM_HI + 16 * n:
        bv, = struct.unpack_from("<Q", xstate, _XSTATE_BV)
        for i in range(n):
            hi = int.from_bytes(xstate[_YMM_HI + 16 * i:_YMM_HI + 16 * i + 16], "little") if bv & _AVX else 0
            regs[f"ymm{i}"] = hi << 128 | regs[f"xmm{i}"]
    return regs


def _full_tag(abridged: int, fstat: int, st: list[int]) -> int:
    """The 16-bit x87 tag word: 3 (empty) for a register the abridged byte marks empty,
    else 0 valid, 1 zero, 2 special, by the physical register's contents. The abridged
    byte and the tag word count physical registers; st(i) is physical (top + i) % 8."""
    top = (fstat >> 11) & 7
    tag = 0
    for phys in range(8):
        if not abridged >> phys & 1:
            kind = 3
        else:
            value = st[(phys - top) % 8]
            exponent, integer, fraction = value >> 64 & 0x7FFF, value >> 63 & 1, value & (1 << 63) - 1
            if exponent == 0x7FFF:
                kind = 2
            elif exponent == 0:
                kind = 1 if integer == 0 and fraction == 0 else 2
            else:
                kind = 0 if integer else 2
        tag |= kind << 2 * phys
    return tag


def st_value(raw: int) -> float:
    """An 80-bit extended value as a float (for showing; precision beyond a double is lost)."""
    sign = -1.0 if raw >> 79 & 1 else 1.0
    exponent, mantissa = raw >> 64 & 0x7FFF, raw & (1 << 64) - 1
    if exponent == 0x7FFF:
        return sign * float("inf") if mantissa << 1 & (1 << 64) - 1 == 0 else float("nan")
    if exponent == 0 and mantissa == 0:
        return sign * 0.0
    try:
        return sign * mantissa * 2.0 ** (exponent - 16383 - 63)
    except OverflowError:
        return sign * float("inf")
