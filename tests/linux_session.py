"""Test plumbing for kernel targets: open each fixture dump once and run pmdb lines on it,
and parse crash's outputs from crash-oracle.txt."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.target import Target
from tests.conftest import FIXTURES, need_fixture
from tests.linux_vmcore import KASLR, NOKASLR, crash_section

SLUB = FIXTURES / "linux-6.1-x86_64-slub"

# every dump file: (folder whose crash-oracle.txt describes it, file name)
DUMPS = [(KASLR, "dump.202611221942"), (KASLR, "vmcore.flat"), (KASLR, "vmcore.kdump-zlib"),
         (KASLR, "vmcore.elf.zst"), (NOKASLR, "dump.202611221946"), (SLUB, "dump.202611222031")]
DUMP_IDS = [f"{folder.name}/{name}" for folder, name in DUMPS]

_OPEN: dict[Path, Target] = {}


def target_for(folder: Path, name: str) -> Target:
    """The dump opened by pmdb's opener, once per test run, from the dump alone (a debug
    vmlinux installed in /usr/lib/debug is not looked for: tests/test_kernel_dwarf.py names it)."""
    path = need_fixture(folder / name)
    if path not in _OPEN:
        _OPEN[path] = open_target(str(path), config=Config({"debuginfo.directories": []}))
    return _OPEN[path]


def run(target: Target, *lines: str) -> tuple[str, str]:
    """(stdout, stderr) of running the lines in a fresh session on the target."""
    out, err = io.StringIO(), io.StringIO()
    session = Session(target, stdout=out, stderr=err)
    for line in lines:
        session.run_line(line)
    return out.getvalue(), err.getvalue()


@dataclass(frozen=True)
class PsRow:
    active: bool
    pid: int
    ppid: int
    cpu: int
    task: int
    state: str
    pct: str
    vsz: int
    rss: int
    comm: str


_PS_ROW = re.compile(r"^([> ])\s*(\d+)\s+(\d+)\s+(\d+)\s+([0-9a-f]+)\s+([A-Z?]{2})\s+(\d+\.\d)\s+(\d+)\s+(\d+)\s+(.*)$")


def parse_ps(lines: list[str]) -> list[PsRow]:
    """Rows of crash's ps layout (crash's own or pmdb's); header and other lines skipped."""
    rows = []
    for line in lines:
        m = _PS_ROW.match(line)
        if m:
            a, pid, ppid, cpu, task, st, pct, vsz, rss, comm = m.groups()
            rows.append(PsRow(a == ">", int(pid), int(ppid), int(cpu), int(task, 16), st, pct,
                              int(vsz), int(rss), comm))
    return rows


def crash_ps(folder: Path) -> list[PsRow]:
    return parse_ps(crash_section(folder, "ps"))


def parse_fields(lines: list[str]) -> dict[str, str]:
    """``KEY: value`` lines (crash's sys layout) as a dict."""
    out = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out
