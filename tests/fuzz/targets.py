"""Every fuzz target, by name (``python -m tests.fuzz --list``)."""

from __future__ import annotations

from tests.fuzz.harness import FuzzTarget


def all_targets() -> dict[str, FuzzTarget]:
    from tests.fuzz import kernel, language, parsers

    return {t.name: t for t in [*parsers.TARGETS, *language.TARGETS, *kernel.TARGETS]}
