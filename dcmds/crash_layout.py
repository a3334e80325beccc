"""crash's column helpers: mkstring's centering, which dcmds in crash's layouts share."""

from __future__ import annotations


def crash_center(text: str, width: int, *, right: bool = False) -> str:
    """crash's mkstring(CENTER): an odd space of padding goes to the right (to the left
    with RJUST, ``right=True``); text as wide as width or wider is left as it is."""
    pad = max(width - len(text), 0)
    left = pad // 2 + (pad % 2 if right else 0)
    return " " * left + text + " " * (pad - left)
