"""The benchmark tables' one text layout, shared by every section of ``python -m bench``."""

from __future__ import annotations


def table(headers: list[str], rows: list[list[str]]) -> str:
    """First column left-aligned, numbers right-aligned, each as wide as its widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers)] + [line(r) for r in rows])
