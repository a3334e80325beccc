"""User cores with separate debug files (issue 16): found by build-id, by .gnu_debuglink
(CRC-checked), in pmdb.toml's debuginfo.directories, or named with -s.

The oracle is gdb on the same cores, with and without the debug files: every thread's
frames (pcs) and the name gdb's ``bt`` gives each (the debug file's DWARF function, else the
ELF symbols: read() is __GI___libc_read with libc6-dbg, read without it). libc's debug file is Debian's libc6-dbg
(/usr/lib/debug/.build-id/xx/yyyy.debug); a stripped test program gets its own debug file
through objcopy --only-keep-debug and --add-gnu-debuglink.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.symbols.finder import build_id_of_file, debuglink, file_crc32
from pmdb.symbols.objfile import open_elf
from pmdb.target import Target
from tests.conftest import need_fixture, need_tools
from tests.cores import (
    GDB_TIMEOUT,
    THREADS_C,
    gcore_core,
    gdb_frame_names,
    kernel_core,
    kernel_cores_possible,
    pmdb_frames,
    same_frames,
)

LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
NO_DEBUG = {"debuginfo.directories": []}

def libc_debug_file() -> Path:
    """libc6-dbg's file for this libc (its build-id layout); skips (fails in CI) without it."""
    build_id = build_id_of_file(str(LIBC))
    if build_id is None:
        need_tools(f"{LIBC} has no build-id")
    assert build_id is not None
    hexid = build_id.hex()
    return need_fixture(Path("/usr/lib/debug/.build-id") / hexid[:2] / f"{hexid[2:]}.debug")


def _core(exe: Path, workdir: Path) -> Path:
    if kernel_cores_possible():
        return kernel_core(exe, workdir, ["4"])
    return gcore_core(exe, workdir, ["4"])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """threads.c at -O2 and its core; a stripped copy without a build-id whose symbols and
    DWARF are only in a debuglinked file beside it, and that copy's core."""
    if not all(shutil.which(t) for t in ("gcc", "gdb", "objcopy", "strip")):
        need_tools("needs gcc, gdb, objcopy and strip")
    root = tmp_path_factory.mktemp("debugfiles")
    exe = root / "threads"
    subprocess.run(["gcc", "-g", "-O2", "-pthread", "-o", str(exe), str(THREADS_C)], check=True,
                   capture_output=True, timeout=120)
    linked = root / "linked" / "threads"
    linked.parent.mkdir()
    subprocess.run(["gcc", "-g", "-O2", "-pthread", "-Wl,--build-id=none", "-o", str(linked),
                    str(THREADS_C)], check=True, capture_output=True, timeout=120)
    debug = linked.parent / "threads.debug"
    for cmd in (["objcopy", "--only-keep-debug", str(linked), str(debug)],
                ["strip", "--strip-all", str(linked)],
                ["objcopy", f"--add-gnu-debuglink={debug}", str(linked)]):
        subprocess.run(cmd, check=True, capture_output=True, timeout=60, cwd=linked.parent)
    return {"exe": exe, "core": _core(exe, root / "core"), "linked": linked, "debug": debug,
            "linked-core": _core(linked, root / "linked-core")}


def _open(core: Path, *files: Path, **options: object) -> Target:
    return open_target(str(core), config=Config(dict(options)), symbol_files=[str(f) for f in files])


def _compare(ours: dict[int, list[tuple[int, str | None]]],
             theirs: dict[int, list[tuple[int, str | None]]]) -> None:
    same_frames(ours, theirs)


# -- libc6-dbg: found by build-id -----------------------------------------------------------

def test_libc_frames_are_named_from_libc6_dbg_as_gdb_names_them(built: dict[str, Path]) -> None:
    """With /usr/lib/debug searched (the default), every thread unwinds to gdb's frames and each
    frame has gdb's name, the static ones too (start_thread, clone3, __libc_start_call_main:
    only the debug file has them), DWARF's where it differs from .dynsym's
    (__GI___libc_read for read)."""
    libc_debug_file()
    target = _open(built["core"])
    libc = next(o for o in target.os.objects.objects if o.name == "libc.so.6")
    assert libc.debug_path is not None and os.path.samefile(libc.debug_path, libc_debug_file())
    ours, theirs = pmdb_frames(target), gdb_frame_names(built["exe"], built["core"])
    _compare(ours, theirs)
    names = {name for frames in ours.values() for _, name in frames}
    assert {"start_thread", "clone3", "__libc_start_call_main"} <= names
    workers = [frames for lwp, frames in ours.items() if lwp != target.threads()[0].id]
    assert len(workers) == 4 and all([n for _, n in f[-2:]] == ["start_thread", "clone3"] for f in workers)


def test_without_debug_files_names_are_gdbs_without_them(built: dict[str, Path]) -> None:
    """No debug directory: .dynsym names only (read, not __read: gdb takes the last alias in
    strcmp order), and the frames gdb cannot name are unnamed in pmdb too."""
    target = _open(built["core"], **NO_DEBUG)
    assert all(o.debug_path is None for o in target.os.objects.objects)
    ours, theirs = pmdb_frames(target), gdb_frame_names(built["exe"], built["core"], debug_dir="/nonexistent")
    _compare(ours, theirs)
    assert "start_thread" not in {name for frames in ours.values() for _, name in frames}


def test_the_debug_file_named_with_s_keeps_the_stacks_whole(built: dict[str, Path]) -> None:
    """-s libc6-dbg's file (its .eh_frame is empty) goes with the libc the core mapped: CFI
    from libc itself, names from the debug file; the stacks equal the automatic search's."""
    debug = libc_debug_file()
    named = _open(built["core"], debug, **NO_DEBUG)
    libc = next(o for o in named.os.objects.objects if o.name == "libc.so.6")
    assert os.path.samefile(libc.path, LIBC) and libc.debug_path == str(debug)
    assert pmdb_frames(named) == pmdb_frames(_open(built["core"]))
    assert not any("debug file" in w for w in named.warnings)


def test_debuginfo_directories_are_searched(built: dict[str, Path], tmp_path: Path) -> None:
    """A directory of pmdb.toml's debuginfo.directories in the build-id layout is searched;
    one without the file gives none."""
    debug = libc_debug_file()
    top = tmp_path / "debug"
    dest = top / ".build-id" / debug.parent.name / debug.name
    dest.parent.mkdir(parents=True)
    os.symlink(debug, dest)
    target = _open(built["core"], **{"debuginfo.directories": [str(top)]})
    libc = next(o for o in target.os.objects.objects if o.name == "libc.so.6")
    assert libc.debug_path == str(dest)
    empty = _open(built["core"], **{"debuginfo.directories": [str(tmp_path / "none")]})
    assert all(o.debug_path is None for o in empty.os.objects.objects)


def test_versioned_names_lose_their_default_version(built: dict[str, Path]) -> None:
    """libc6-dbg's .symtab spells default versions (memcpy@@GLIBC_2.14): gdb prints them
    bare, and so does pmdb; the hidden ones (name@VERSION) stay distinct."""
    libc_debug_file()
    target = _open(built["core"])
    names = set(target.symbols.names())
    assert not any("@@" in n for n in names)
    assert "pthread_cond_wait" in names and "pthread_cond_wait@GLIBC_2.2.5" in names
    new, old = target.symbols.lookup("pthread_cond_wait"), target.symbols.lookup("pthread_cond_wait@GLIBC_2.2.5")
    assert new is not None and old is not None and new.addr != old.addr
    out = io.StringIO()
    Session(target, stdout=out, stderr=io.StringIO()).run_line(f"{new.addr:#x}=p")
    # gdb's <name> of the address: DWARF's ___pthread_cond_wait, never a versioned spelling
    text = subprocess.run(["gdb", "-q", "-nx", "-batch", "-ex", f"print (void *){new.addr:#x}",
                           str(built["exe"]), "-c", str(built["core"])], capture_output=True,
                          text=True, timeout=GDB_TIMEOUT).stdout
    gdb_name = text.strip().splitlines()[-1].split("<")[1].rstrip(">")
    assert out.getvalue().split() == [f"libc.so.6`{gdb_name}"] and "@" not in gdb_name


def test_libc_types_come_from_its_debug_file(built: dict[str, Path]) -> None:
    """DWARF of the debug file: struct pthread (libc's own) has gdb's size; a type of the
    program itself is found without touching libc's DWARF."""
    libc_debug_file()
    target = _open(built["core"])
    assert target.types.lookup("struct config").size == gdb_sizeof(built["exe"], built["core"], "struct config")
    libc_dwarf = target.types.sources[-1]
    assert libc_dwarf.parsed_cus == 0             # type: ignore[attr-defined]
    pthread = gdb_sizeof(built["exe"], built["core"], "struct pthread")
    assert target.types.lookup("struct pthread").size == pthread
    assert libc_dwarf.parsed_cus > 0              # type: ignore[attr-defined]


def gdb_sizeof(exe: Path, core: Path, type_name: str) -> int:
    text = subprocess.run(["gdb", "-q", "-nx", "-batch", "-ex", f"print sizeof({type_name})", str(exe),
                           "-c", str(core)], capture_output=True, text=True, timeout=GDB_TIMEOUT).stdout
    return int(text.strip().splitlines()[-1].split("=")[1])


# -- a program's own debug file, by .gnu_debuglink and its CRC --------------------------------

def test_debuglink_beside_the_program_names_its_functions(built: dict[str, Path]) -> None:
    """A stripped program without a build-id: its debug file is found by .gnu_debuglink
    beside it and checked by CRC; its static functions (block_here, worker) are named as gdb
    names them, and its DWARF gives g_config's type."""
    exe, core = built["linked"], built["linked-core"]
    elf, stream = open_elf(str(exe))
    try:
        link = debuglink(elf)
    finally:
        stream.close()
    assert link is not None and link == ("threads.debug", file_crc32(str(built["debug"])))
    target = _open(core)
    main = target.os.objects.main
    assert main is not None and main.debug_path == str(built["debug"])
    ours = pmdb_frames(target)
    _compare(ours, gdb_frame_names(exe, core))
    assert any(name == "block_here" for frames in ours.values() for _, name in frames)
    assert target.types.lookup("struct config").size == gdb_sizeof(built["exe"], built["core"], "struct config")


def test_a_debug_file_whose_crc_differs_is_not_used(built: dict[str, Path], tmp_path: Path) -> None:
    """The same name with other contents (one byte changed): the CRC tells, and the program's
    functions stay unnamed, as gdb leaves them."""
    workdir = tmp_path / "copy"
    workdir.mkdir()
    exe = workdir / "threads"
    shutil.copy(built["linked"], exe)
    data = bytearray(built["debug"].read_bytes())
    data[-1] ^= 0xFF
    (workdir / "threads.debug").write_bytes(bytes(data))
    target = _open(built["linked-core"], exe, **NO_DEBUG)
    main = target.os.objects.main
    assert main is not None and main.path == str(exe) and main.debug_path is None
    names = {n for frames in pmdb_frames(target).values() for _, n in frames}
    assert "block_here" not in names


# -- the fixture cores ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["hashcrash-x86_64-O2.core", "hashcrash-x86_64-O2.gdb.core",
                                  "hashcrash-i386-O2.core"])
def test_fixture_cores_frames_equal_gdbs(user_cores: Path, name: str) -> None:
    """The shared fixture cores, with whatever debug files this machine has for their
    libraries (libc6-dbg's, when its libc is theirs): pmdb's frames and names are gdb's."""
    import json

    core = need_fixture(user_cores / name)
    exe = user_cores / json.loads((user_cores / "expected.json").read_text())[name]["executable"]
    target = open_target(str(core), config=Config(), symbol_files=[str(exe)])
    _compare(pmdb_frames(target), gdb_frame_names(exe, core))


def test_cfi_of_a_program_without_unwind_tables_comes_from_its_debug_file(tmp_path: Path) -> None:
    """Built with -fno-asynchronous-unwind-tables -fomit-frame-pointer, a program's CFI is
    only in .debug_frame, which strip moves to its debug file: every frame is unwound by it
    (no frame-pointer guess) and equals gdb's."""
    if not all(shutil.which(t) for t in ("gcc", "gdb", "objcopy", "strip")):
        need_tools("needs gcc, gdb, objcopy and strip")
    exe = tmp_path / "threads"
    subprocess.run(["gcc", "-g", "-O2", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
                    "-fomit-frame-pointer", "-pthread", "-o", str(exe), str(THREADS_C)], check=True,
                   capture_output=True, timeout=120)
    for cmd in (["objcopy", "--only-keep-debug", "threads", "threads.debug"], ["strip", "--strip-all", "threads"],
                ["objcopy", "--add-gnu-debuglink=threads.debug", "threads"]):
        subprocess.run(cmd, check=True, capture_output=True, timeout=60, cwd=tmp_path)
    core = _core(exe, tmp_path / "core")
    target = _open(core, **NO_DEBUG)
    main = target.os.objects.main
    assert main is not None and main.debug_path == str(tmp_path / "threads.debug")
    _compare(pmdb_frames(target), gdb_frame_names(exe, core, debug_dir="/nonexistent"))
    for thread in target.threads():
        frames = target.stack(thread)
        assert all(f.method == "cfi" for f in frames[1:]), [(f.pc, f.method) for f in frames]


# -- bad input -------------------------------------------------------------------------------

def test_a_damaged_debug_file_costs_names_not_the_stacks(built: dict[str, Path], tmp_path: Path) -> None:
    """libc6-dbg's file with its .debug_aranges and .debug_info scrambled, then cut short,
    found by its (intact) build-id: no traceback, the stacks are unchanged, and frames fall
    back to the names the symbols give."""
    debug = libc_debug_file()
    data = bytearray(debug.read_bytes())
    elf, stream = open_elf(str(debug))
    try:
        spans = [(s["sh_offset"], s["sh_size"]) for s in elf.iter_sections()
                 if s.name in (".debug_aranges", ".debug_info")]
    finally:
        stream.close()
    for off, size in spans:
        for i in range(off, off + size, 7):
            data[i] ^= 0x5A
    good = pmdb_frames(_open(built["core"], **NO_DEBUG))
    for blob in (bytes(data), bytes(data[:0x3000])):
        top = tmp_path / str(len(blob))
        dest = top / ".build-id" / debug.parent.name / debug.name
        dest.parent.mkdir(parents=True)
        dest.write_bytes(blob)
        target = _open(built["core"], **{"debuginfo.directories": [str(top)]})
        ours = pmdb_frames(target)
        assert [[pc for pc, _ in f] for f in ours.values()] == [[pc for pc, _ in f] for f in good.values()]
        out, err = io.StringIO(), io.StringIO()
        Session(target, stdout=out, stderr=err).run_line("::sizeof struct pthread")
        assert "Traceback" not in err.getvalue() and len(err.getvalue().splitlines()) == 1


def test_the_aranges_parser_refuses_bad_bytes() -> None:
    """Synthetic blobs: a unit's tuples read up to their terminator; a length past the end,
    a zero length or an odd address size end the table instead of reading beyond it."""
    import struct

    from pmdb.symbols.dwarfnames import parse_aranges

    unit = struct.pack("<HIBB", 2, 0x40, 8, 0) + b"\0" * 4 + struct.pack("<QQQQQQ", 0x2000, 0x10, 0x1000, 0x20, 0, 0)
    blob = struct.pack("<I", len(unit)) + unit
    assert parse_aranges(blob, True) == ([0x1000, 0x2000], [(0x1000, 0x1020, 0x40), (0x2000, 0x2010, 0x40)])
    assert parse_aranges(struct.pack("<I", 1 << 20) + unit, True) == ([], [])
    assert parse_aranges(struct.pack("<I", 0) + unit, True) == ([], [])
    odd = struct.pack("<HIBB", 2, 0, 3, 0) + b"\0" * 8
    assert parse_aranges(struct.pack("<I", len(odd)) + odd, True) == ([], [])
    assert parse_aranges(b"\x01\x02", True) == ([], [])
