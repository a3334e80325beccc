"""Bad input to open_target: each case gives exactly one FormatError line, quickly, and nothing else."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.errors import FormatError
from pmdb.opener import open_target

KERNEL_CORE = "hashcrash-x86_64-O2.core"


def _fails_cleanly(path: Path | str, *words: str) -> str:
    """open_target raises FormatError (and nothing else) with a one-line message, within 2 s."""
    start = time.monotonic()
    with pytest.raises(FormatError) as err:
        open_target(str(path), config=Config())
    assert time.monotonic() - start < 2.0
    msg = str(err.value)
    assert msg and "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def _copy(user_cores: Path, tmp_path: Path, name: str = KERNEL_CORE) -> Path:
    dst = tmp_path / name
    shutil.copyfile(user_cores / name, dst)
    return dst


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_missing_file(tmp_path: Path) -> None:
    _fails_cleanly(tmp_path / "nope.core", "nope.core", "no such file")


def test_directory(tmp_path: Path) -> None:
    _fails_cleanly(tmp_path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    _fails_cleanly(tmp_path / "empty", "empty")


def test_random_bytes(tmp_path: Path) -> None:
    (tmp_path / "random").write_bytes(os.urandom(8192).replace(b"\x7fELF", b"xELF"))
    _fails_cleanly(tmp_path / "random", "unknown dump format")


def test_corrupt_kdump_header_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "vmcore").write_bytes(b"KDUMP   " + bytes(4096))
    _fails_cleanly(tmp_path / "vmcore", "vmcore", "kdump")


def test_elf_that_is_not_a_core(user_cores: Path) -> None:
    _fails_cleanly(user_cores / "hashcrash-x86_64-O2", "not a core file", "ET_EXEC")


def test_shared_object_is_not_a_core(tmp_path: Path) -> None:
    src = tmp_path / "t.c"
    src.write_text("int f(void) { return 1; }\n")
    so = tmp_path / "libt.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    _fails_cleanly(so, "not a core file", "ET_DYN")


@pytest.mark.parametrize("cut", [3, 10, 40, 63, 100, 1000, 0x5b8 + 0x100, 0x3000, 0x20000, -1])
def test_truncated_core(user_cores: Path, tmp_path: Path, cut: int) -> None:
    """Cut inside the ELF header, the program headers, the notes, a segment, the last byte."""
    core = _copy(user_cores, tmp_path)
    size = core.stat().st_size
    with open(core, "r+b") as f:
        f.truncate(cut if cut > 0 else size + cut)
    _fails_cleanly(core, KERNEL_CORE)


def _ehdr_field(fmt: str, offset: int) -> Callable[[Path, int], None]:
    def patch(path: Path, value: int) -> None:
        _patch(path, offset, struct.pack("<" + fmt, value))
    return patch


# ELF64 header offsets: e_phoff 0x20, e_phentsize 0x36, e_phnum 0x38, e_machine 0x12
@pytest.mark.parametrize(("what", "offset", "fmt", "value"), [
    ("e_phoff past the end", 0x20, "Q", 0x7FFF_FFFF_FFFF),
    ("e_phoff huge", 0x20, "Q", 2**64 - 8),
    ("e_phoff unaligned", 0x20, "Q", 0x41),
    ("e_phnum zero", 0x38, "H", 0),
    ("e_phnum large", 0x38, "H", 0xFFFE),
    ("e_phnum PN_XNUM", 0x38, "H", 0xFFFF),
    ("e_phentsize tiny", 0x36, "H", 4),
    ("e_machine unknown", 0x12, "H", 0x1234),
])
def test_corrupt_header(user_cores: Path, tmp_path: Path, what: str, offset: int, fmt: str,
                        value: int) -> None:
    core = _copy(user_cores, tmp_path)
    _ehdr_field(fmt, offset)(core, value)
    _fails_cleanly(core, KERNEL_CORE)


def _first_note_offset(core: Path) -> int:
    """File offset of the PT_NOTE segment (read with the header layout, not with pmdb)."""
    data = core.read_bytes()[:0x2000]
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phnum, = struct.unpack_from("<H", data, 0x38)
    for i in range(phnum):
        ptype, _flags, off = struct.unpack_from("<IIQ", data, phoff + i * 56)
        if ptype == 4:
            return off
    raise AssertionError("no PT_NOTE")


@pytest.mark.parametrize(("field", "value"), [("namesz", 0xFFFFFFFF), ("descsz", 0xFFFFFFF0),
                                               ("descsz", 0x10000)])
def test_corrupt_note_sizes(user_cores: Path, tmp_path: Path, field: str, value: int) -> None:
    core = _copy(user_cores, tmp_path)
    at = _first_note_offset(core) + (0 if field == "namesz" else 4)
    _patch(core, at, struct.pack("<I", value))
    _fails_cleanly(core, "corrupt note")


def test_corrupt_pt_load_offset(user_cores: Path, tmp_path: Path) -> None:
    core = _copy(user_cores, tmp_path)
    data = core.read_bytes()[:0x1000]
    phoff, = struct.unpack_from("<Q", data, 0x20)
    _patch(core, phoff + 56 + 8, struct.pack("<Q", 2**63))  # the second phdr's p_offset
    _fails_cleanly(core, KERNEL_CORE, "truncated")


def test_corrupt_nt_file_count(user_cores: Path, tmp_path: Path) -> None:
    core = _copy(user_cores, tmp_path)
    data = core.read_bytes()
    at = data.index(b"CORE\0\0\0\0", data.index(struct.pack("<I", 0x46494C45)) - 8) + 8
    _patch(core, at, struct.pack("<Q", 2**40))
    _fails_cleanly(core, "NT_FILE")


def test_every_fixture_still_opens(user_cores: Path) -> None:
    """The checks above must not reject good cores."""
    for core in sorted(user_cores.glob("*.core")):
        open_target(str(core), config=Config()).close()
