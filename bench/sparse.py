"""Open time against dump size: the 200 MB QEMU ELF vmcore next to a sparse 64 GB copy.

The copy is the same dump with one more PT_LOAD: 64 GB of "physical memory" above
4 GB, backed by a hole in the file (no disk blocks). A reader that scanned,
hashed or copied its segments would take time in proportion to the size; pmdb
maps the file and reads only what the commands touch, so the two rows match.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

from pmdb.config import Config
from pmdb.dumps.zst import decompressed
from pmdb.opener import open_target
from pmdb.session import Session
from tests.conftest import FIXTURES

ELF_ZST = FIXTURES / "linux-6.1-x86_64" / "vmcore.elf.zst"
COMMANDS = ("::status", "::ps", "::msgbuf")
SPARSE_BYTES = 64 << 30
PHDR = struct.Struct("<IIQQQQQQ")   # Elf64_Phdr


def make_sparse_copy(elf_path: str, out: Path, extra: int = SPARSE_BYTES) -> Path:
    """A copy of an ELF vmcore with ``extra`` bytes of hole-backed physical memory."""
    shutil.copyfile(elf_path, out)
    with open(out, "r+b") as f:
        head = f.read(64)
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        phdrs = f.read(phentsize * phnum)
        end = f.seek(0, os.SEEK_END)
        table_at = (end + 0xFFF) & ~0xFFF
        data_at = (table_at + phentsize * (phnum + 1) + 0xFFF) & ~0xFFF
        load = PHDR.pack(1, 6, data_at, 0, 1 << 32, extra, extra, 0x1000)
        f.seek(table_at)
        f.write(phdrs + load)
        f.truncate(data_at + extra)          # the hole: no blocks on disk
        f.seek(32)
        f.write(struct.pack("<Q", table_at))
        f.seek(56)
        f.write(struct.pack("<H", phnum + 1))
    return out


def open_and_run(path: str) -> float:
    """Seconds for open + the three commands, output discarded."""
    start = time.perf_counter()
    target = open_target(path, config=Config())
    sink = open(os.devnull, "w")
    session = Session(target, stdout=sink, stderr=sink)
    for cmd in COMMANDS:
        session.run_line(cmd)
    sink.close()
    target.close()
    return time.perf_counter() - start


def sparse_rows(runs: int = 3) -> list[tuple[str, int, float]]:
    """(label, apparent size, best seconds) for the 200 MB ELF and its sparse 64 GB copy."""
    if not ELF_ZST.exists():
        return []
    elf = decompressed(str(ELF_ZST))
    rows = [("QEMU ELF vmcore", os.path.getsize(elf), min(open_and_run(elf) for _ in range(runs)))]
    with tempfile.TemporaryDirectory(prefix="pmdb-sparse-") as tmp:
        big = make_sparse_copy(elf, Path(tmp) / "vmcore-64g.elf")
        rows.append(("same + 64 GB sparse PT_LOAD", os.path.getsize(big),
                     min(open_and_run(str(big)) for _ in range(runs))))
    return rows


def sparse_table(runs: int = 3) -> str:
    rows = sparse_rows(runs)
    if not rows:
        return "sparse dump: fixture not available\n"
    lines = ["| dump | apparent size | open + status + ps + msgbuf |", "| --- | ---: | ---: |"]
    for label, size, secs in rows:
        lines.append(f"| {label} | {size / (1 << 30):.1f} GiB | {secs * 1000:.0f} ms |")
    lines.append(f"\nsize ratio {rows[-1][1] / rows[0][1]:.0f}x, time ratio {rows[-1][2] / rows[0][2]:.2f}x "
                 "(flat: the open reads headers, notes and what the commands touch)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(sparse_table())
