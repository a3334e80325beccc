"""crash's column layout: its mkstring() justification and its address widths, so the
crash spellings (vm, kmem -v, kmem -p) line up character for character with crash."""

from __future__ import annotations

from dataclasses import dataclass


def mkstring(text: str, width: int, how: str = "left") -> str:
    """``text`` fitted to ``width`` as crash's mkstring does: "left", "right", or
    "center" (an odd spare column goes right) / "center-right" (it goes left); text
    already as wide as the column is returned as is."""
    extra = width - len(text)
    if extra <= 0:
        return text
    if how == "left":
        return text + " " * extra
    if how == "right":
        return " " * extra + text
    left = extra // 2 + (extra % 2 if how == "center-right" else 0)
    return " " * left + text + " " * (extra - left)


@dataclass(frozen=True)
class Widths:
    """crash's VADDR_PRLEN, UVADDR_PRLEN and space(MINSPACE) for a pointer size."""

    vaddr: int
    uvaddr: int
    minspace: str


def widths(ptr_size: int) -> Widths:
    """64-bit (x86-64, arm64): 16, 10 and one space; 32-bit: 8, 8 and two."""
    return Widths(16, 10, " ") if ptr_size == 8 else Widths(8, 8, "  ")
