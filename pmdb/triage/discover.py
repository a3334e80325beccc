"""Which files to triage: every file named, and the dumps found under every directory named.

In a directory a file counts when its first bytes are a format pmdb opens (the magic table
of pmdb.dumps.detect) and, for ELF, when it is a core (ET_CORE): the kernel modules,
executables and logs that sit beside dumps are not dumps. A file named on the command line
is always triaged, so a damaged one still gets its one-line error row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from pmdb.dumps.detect import FORMATS
from pmdb.dumps.elf import ELF_MAGIC

ET_CORE = 4


def looks_like_dump(path: str) -> bool:
    """Whether a file's first bytes make it a dump (or a user core) pmdb could open."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return False
    if head.startswith(ELF_MAGIC):
        if len(head) < 18 or head[5] not in (1, 2):
            return False
        return int.from_bytes(head[16:18], "little" if head[5] == 1 else "big") == ET_CORE
    return any(head.startswith(fmt.magic) for fmt in FORMATS)


def find_dumps(paths: Iterable[str]) -> list[str]:
    """The dumps to triage, in a stable order, each once (by its real path)."""
    out: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.append(os.path.abspath(path))

    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if os.path.isfile(full) and looks_like_dump(full):
                        add(full)
        else:
            add(path)
    return out
