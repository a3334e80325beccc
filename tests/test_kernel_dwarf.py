"""A kernel's debug vmlinux (DWARF) next to the dump's BTF, on the shared 6.1 fixture dump.

The oracles: the dump's own BTF (DWARF must lay out every struct as BTF does, and pmdb with
DWARF alone must print what it prints with BTF), the dump's raw memory (``::print jiffies``
is the word at ``jiffies``), and pyelftools' own walk of the units (the fast scan must find
the DIEs pyelftools finds). Damaged, truncated and mismatched files cost one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pmdb import forked
from pmdb.cache import Cache
from pmdb.config import Config
from pmdb.errors import FormatError
from pmdb.opener import open_target
from pmdb.target import Target
from pmdb.types.btf import BtfTypes
from pmdb.types.debugfile import DebugFile
from pmdb.types.dwarf import DwarfTypes
from pmdb.types.dwarf_index import NameIndex, build_index, cached_index
from pmdb.types.dwarf_kernel import KernelDieIndex
from pmdb.types.dwarf_scan import KIND_NAMES, PLAIN, VARIABLE
from pmdb.types.head_start import DWARF_UNITS, start_head_start
from pmdb.types.model import Type, type_name
from tests import kernel_truth as kt
from tests.conftest import USER_CORES, need_fixture
from tests.linux_session import run
from tests.linux_vmcore import KASLR

RELEASE = "6.1.0-56-amd64"
DUMP = KASLR / "dump.202611221942"
NO_SEARCH = {"debuginfo.directories": []}
STRUCTS = ("task_struct", "kmem_cache", "module", "mm_struct", "page", "slab", "kmem_cache_cpu",
           "kmem_cache_node", "list_head", "pid_namespace", "uts_namespace", "timekeeper", "rq",
           "pt_regs", "inactive_task_frame", "printk_ringbuffer", "vmap_area", "mod_kallsyms",
           "file", "inode", "sk_buff", "net_device")
_OPEN: dict[str, Target] = {}


def _target(kind: str) -> Target:
    """The fixture dump: "btf" alone, "both" (BTF, then the vmlinux's DWARF), "dwarf" alone."""
    if kind not in _OPEN:
        dump = need_fixture(DUMP)
        files = [] if kind == "btf" else [str(kt.need_dbg_vmlinux(RELEASE))]
        config = Config({**NO_SEARCH, "debuginfo.kernel_btf": kind != "dwarf"})
        _OPEN[kind] = open_target(str(dump), config=config, symbol_files=files)
    return _OPEN[kind]


def _shape(t: Type, depth: int = 0) -> list[object]:
    """A struct's layout: size, and each member's name, bit offset, bit size, size and type
    (a flexible array is [0] in BTF, [] in DWARF: the same thing)."""
    t = t.strip()
    out: list[object] = [t.kind, t.sizeof()]
    for m in t.members if t.kind in ("struct", "union") else []:
        out.append((m.name, m.bit_offset, m.bit_size, m.type.sizeof(), type_name(m.type).replace("[0]", "[]")))
        if not m.name and depth < 4:
            out.append(_shape(m.type, depth + 1))
    return out


@pytest.mark.parametrize("name", STRUCTS)
def test_dwarf_lays_structs_out_as_btf_does(name: str) -> None:
    btf, dwarf = _target("btf").types.lookup(f"struct {name}"), _target("dwarf").types.lookup(f"struct {name}")
    assert _shape(dwarf) == _shape(btf)


def test_print_jiffies_is_the_word_at_jiffies() -> None:
    target = _target("both")
    sym = target.symbols.lookup("jiffies")
    assert sym is not None
    raw = target.memory.u64(sym.addr)
    out, err = run(target, "::print jiffies", "jiffies::print")
    assert err == ""
    assert out.splitlines() == [f"{raw:#x}"] * 2


def test_print_a_global_struct_member_reads_btfs_offset() -> None:
    """init_pid_ns's members, typed by DWARF, at the offsets BTF gives."""
    target = _target("both")
    sym = target.symbols.lookup("init_pid_ns")
    assert sym is not None
    level = _target("btf").types.lookup("struct pid_namespace").find_member("pid_allocated")
    assert level is not None
    raw = target.memory.u32(sym.addr + level[1] // 8)
    out, err = run(target, "::print init_pid_ns pid_allocated")
    assert err == "" and out == f"pid_allocated = {raw:#x}\n"


def test_types_stay_btf_first() -> None:
    """A type both describe comes from BTF (the first source); DWARF only fills gaps."""
    target = _target("both")
    assert type(target.types.sources[0]).__name__ == "BtfTypes"
    assert isinstance(target.types.sources[1], DwarfTypes)
    out, err = run(target, "::sizeof struct task_struct")
    assert err == "" and out.split()[-1] in (hex(_target("btf").types.lookup("struct task_struct").sizeof()),
                                             str(_target("btf").types.lookup("struct task_struct").sizeof()))


def test_without_a_vmlinux_only_the_headers_usual_globals_are_typed() -> None:
    """BTF types no global variable but per-CPU ones: the usual ones take the type the
    kernel's headers declare (pmdb.os.linux.declarations), the same DWARF gives; the rest
    have none."""
    btf, dwarf = _target("btf"), _target("both")
    for name in ("jiffies", "init_task", "init_pid_ns", "nr_cpu_ids"):
        assert type_name(btf.types.variable_type(name)) == type_name(dwarf.types.variable_type(name)).replace(
            "volatile ", ""), name
    out, err = run(btf, "::print jiffies")
    assert out.strip() == "0xfffee012" and err == ""
    out, err = run(btf, "::print loops_per_jiffy")
    assert out == "" and "no type is known for global 'loops_per_jiffy'" in err


def test_only_a_vmlinux_brings_pyelftools_in(tmp_path: Path) -> None:
    """pyelftools' DWARF modules (~25 ms of a start) are imported for a debug vmlinux, not by
    an open of the dump alone."""
    config = tmp_path / "pmdb.toml"
    config.write_text("[debuginfo]\ndirectories = []\n")
    code = ("import sys; from pmdb.cli import main; main(sys.argv[1:]); "
            "print(' '.join(m for m in sorted(sys.modules) if m.startswith('elftools')))")
    dump = str(need_fixture(DUMP))
    alone = subprocess.run([sys.executable, "-c", code, "-q", "--config", str(config), dump, "-e", "::status"],
                           capture_output=True, text=True, timeout=300)
    assert "PANIC" in alone.stdout.upper() and "elftools" not in alone.stdout.splitlines()[-1]
    vmlinux = str(kt.need_dbg_vmlinux(RELEASE))
    both = subprocess.run([sys.executable, "-c", code, "-q", "--config", str(config), dump, vmlinux, "-e",
                           "::status"], capture_output=True, text=True, timeout=300)
    assert "elftools.dwarf" in both.stdout.splitlines()[-1]


@pytest.mark.parametrize("command", ["::ps", "::kmastat", "::stacks", "::modinfo", "$c"])
def test_dwarf_alone_prints_what_btf_prints(command: str) -> None:
    """BTF ignored (debuginfo.kernel_btf = false): every answer is the BTF one."""
    assert run(_target("dwarf"), command) == run(_target("btf"), command)


# -- the scan against pyelftools ---------------------------------------------------------

def _pyelftools_names(debug: DebugFile, units: int) -> set[tuple[str, str]]:
    """(kind, name) of the named top-level type and variable DIEs of the first units, as
    pyelftools sees them."""
    tags = {"DW_TAG_structure_type": "struct", "DW_TAG_union_type": "union", "DW_TAG_enumeration_type": "enum",
            "DW_TAG_typedef": "", "DW_TAG_base_type": "", "DW_TAG_variable": "var"}
    out = set()
    for i, cu in enumerate(debug.dwarf().iter_CUs()):
        if i >= units:
            break
        for die in cu.get_top_DIE().iter_children():
            name = die.attributes.get("DW_AT_name")
            if die.tag in tags and name is not None:
                out.add((tags[die.tag], name.value.decode()))
    return out


def _scanned_names(index: NameIndex) -> set[tuple[str, str]]:
    kinds = {**KIND_NAMES, PLAIN: "", VARIABLE: "var"}
    return {(kinds[k], n) for k, table in index.names.items() for n in table}


@pytest.mark.parametrize("program", ["hashcrash-x86_64-O2", "hashcrash-i386-O2"])
def test_scan_finds_what_pyelftools_finds(program: str) -> None:
    debug = DebugFile(str(need_fixture(USER_CORES / program)))
    index = build_index(debug)
    assert _scanned_names(index) == _pyelftools_names(debug, 1 << 20)
    assert len(index.units) == sum(1 for _ in debug.dwarf().iter_CUs())


def test_scan_of_vmlinux_units_finds_what_pyelftools_finds() -> None:
    """The first units of the vmlinux: every name pyelftools finds there is in the index."""
    debug = DebugFile(str(kt.need_dbg_vmlinux(RELEASE)))
    wanted = _pyelftools_names(debug, 3)
    types = _target("both").types.sources[1]           # its index: the scan of every unit
    assert isinstance(types, DwarfTypes)
    names = set(types.variable_names()) | set(types.type_names())
    assert len(wanted) > 500
    for kind, name in wanted:
        assert (name if kind in ("", "var") else f"{kind} {name}") in names


def test_abbrevs_share_a_step_function_only_when_they_step_alike() -> None:
    """Abbrevs that differ only in attributes the scan skips share one generated step
    function: its code must be, for each abbrev of the vmlinux's first units, the code that
    abbrev alone would get (a run of fixed bytes once read as a form: exprloc is 0x18 = 24)."""
    import itertools

    from pmdb.types.dwarf_scan import ShapeCompiler, parse_abbrevs, units

    debug = DebugFile(str(kt.need_dbg_vmlinux(RELEASE)))
    base, size = debug.sections[".debug_info"]
    start, abbrev_size = debug.sections[".debug_abbrev"]
    compiler = ShapeCompiler(debug.little)
    compiled = 0
    for unit in itertools.islice(units(debug.mm, base, size, debug.little), 40):
        for ab in parse_abbrevs(debug.mm, start + unit.abbrev_offset, start + abbrev_size).values():
            shape = compiler.shape(ab, unit.offset_size, unit.address_size, unit.version)
            if shape.step is None:
                continue
            _, wanted, sizes = compiler.plan(ab, unit.offset_size, unit.address_size, unit.version)
            assert shape.source == compiler.source(ab, wanted, sizes, unit.offset_size), ab
            compiled += 1
    shared = compiled - len({id(s) for s in compiler._by_steps.values()})
    assert compiled > 500 and shared > 100


# -- the cache ---------------------------------------------------------------------------

def _die_at(debug: DebugFile):  # type: ignore[no-untyped-def]
    return lambda index, off: debug.dwarf().get_CU_at(index.unit_of(off)).get_DIE_from_refaddr(off)


def test_index_is_cached_and_a_damaged_copy_is_rebuilt(tmp_path: Path) -> None:
    debug = DebugFile(str(need_fixture(USER_CORES / "hashcrash-x86_64-O2")))
    cache = Cache(tmp_path)
    first, cached = cached_index(debug, cache, _die_at(debug))
    assert not cached
    again, cached = cached_index(debug, cache, _die_at(debug))
    assert cached and again.names == first.names
    (entry,) = (tmp_path / "dwarf").iterdir()
    entry.write_bytes(b"\0" * entry.stat().st_size)           # same size: only the content is bad
    rebuilt, cached = cached_index(debug, cache, _die_at(debug))
    assert not cached and rebuilt.names == first.names


def test_a_partial_index_answers_as_the_whole_index_does(tmp_path: Path) -> None:
    """Lookups that end early give the DIE the whole index gives: every struct's and
    typedef's first definition, and for globals a DIE of the same type; the common ones are
    settled in the first units, and nothing is cached until the scan is whole."""
    debug = DebugFile(str(kt.need_dbg_vmlinux(RELEASE)))
    whole = build_index(debug)
    cache = Cache(tmp_path)
    index = KernelDieIndex(debug, cache)
    types = DwarfTypes(index=index)
    assert types.variable_type("jiffies") is not None and index.type_die("task_struct", "struct") is not None
    assert index._partial is not None and len(index._partial.units) <= 16 < len(whole.units)
    for name in STRUCTS:
        assert index.type_die(name, "struct").offset == whole.offset(1, name), name
    for name in ("pid_t", "u64", "atomic_t", "gfp_t"):
        assert index.type_die(name, None).offset == whole.offset(PLAIN, name), name
    for name in ("jiffies", "init_task", "init_pid_ns", "nr_cpu_ids", "system_state"):
        got, want = types.variable_type(name), DwarfTypes(index=_WholeIndex(debug, whole)).variable_type(name)
        assert got is not None and want is not None and type_name(got) == type_name(want), name
        assert got.sizeof() == want.sizeof(), name
    assert len(index._partial.units) < len(whole.units)
    assert not list(tmp_path.rglob("index*"))           # a partial index is never cached
    assert index.type_die("no_such_struct_anywhere", "struct") is None   # a miss scans it all...
    assert list(tmp_path.rglob("index*")) and index.index().names == whole.names   # ...and caches it


def _resumed(debug: DebugFile, cache: Cache) -> tuple[KernelDieIndex, DwarfTypes]:
    index = KernelDieIndex(debug, cache)
    return index, DwarfTypes(index=index)


def test_a_scan_cut_short_is_kept_and_resumed(tmp_path: Path) -> None:
    """What one process's lookups scanned is kept when its target closes; the next one
    starts from there (no unit scanned again) and answers as the whole index does, for the
    names found before and for names further on."""
    debug = DebugFile(str(kt.need_dbg_vmlinux(RELEASE)))
    whole = build_index(debug)
    cache = Cache(tmp_path)
    first, types = _resumed(debug, cache)
    assert types.variable_type("jiffies") is not None
    assert first._partial is not None
    scanned = len(first._partial.units)
    types.close()
    (entry,) = tmp_path.rglob("partial*")
    second, types = _resumed(DebugFile(debug.path), cache)
    assert types.variable_type("jiffies") is not None
    assert second._partial is not None and second._partial.resumed_at == scanned == len(second._partial.units)
    for name in STRUCTS:                    # some of these lie past the first units
        assert second.type_die(name, "struct").offset == whole.offset(1, name), name
    assert len(second._partial.units) > scanned
    types.close()                           # went further: kept again, further
    third, _ = _resumed(DebugFile(debug.path), cache)
    assert third.type_die("rq", "struct").offset == whole.offset(1, "rq")
    assert third._partial is not None and third._partial.resumed_at == len(second._partial.units)
    assert [p.name for p in tmp_path.rglob("partial*")] != [entry.name]      # one entry, the longer scan's
    assert len(list(tmp_path.rglob("partial*"))) == 1


def test_a_head_start_answers_as_the_whole_index_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first units scanned by a forked child (while the dump's tables decode) are what
    the first lookups start from: the same answers as the whole index, no unit scanned
    twice, and the scan kept for the next process, which then starts no head start."""
    monkeypatch.setattr(forked, "cpus", lambda: 2)
    monkeypatch.setattr(forked, "single_threaded", lambda: True)
    debug = DebugFile(str(kt.need_dbg_vmlinux(RELEASE)))
    whole = build_index(debug)
    cache = Cache(tmp_path)
    child = start_head_start(debug, cache)
    assert child is not None
    index = KernelDieIndex(debug, cache, head_start=child)
    types = DwarfTypes(index=index)
    for name in ("jiffies", "init_pid_ns", "nr_cpu_ids"):
        got, want = types.variable_type(name), DwarfTypes(index=_WholeIndex(debug, whole)).variable_type(name)
        assert got is not None and want is not None and type_name(got) == type_name(want), name
    assert index.head_start_units == DWARF_UNITS
    assert index._partial is not None and index._partial.units[:DWARF_UNITS] == whole.units[:DWARF_UNITS]
    for name in STRUCTS:
        assert index.type_die(name, "struct").offset == whole.offset(1, name), name
    types.close()
    assert len(list(tmp_path.rglob("partial*"))) == 1
    assert start_head_start(DebugFile(debug.path), cache) is None


def test_a_head_start_indexes_the_btf_the_dump_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vmlinux's own .BTF is byte for byte the dump's (same build-id), so the child's
    index of it is the dump's BTF index; bytes that differ anywhere get none."""
    monkeypatch.setattr(forked, "cpus", lambda: 2)
    monkeypatch.setattr(forked, "single_threaded", lambda: True)
    target = _target("btf")
    start, stop = (target.symbols.lookup(name).addr for name in ("__start_BTF", "__stop_BTF"))
    data = target.memory.read(start, stop - start)
    child = start_head_start(DebugFile(str(kt.need_dbg_vmlinux(RELEASE))), Cache(tmp_path))
    assert child is not None
    index = child.btf_index(data)
    assert index is not None
    offs, names = BtfTypes(data).index_arrays()
    assert index[0] == offs and index[1] == names and len(offs) > 100_000
    changed = bytearray(data)
    changed[len(data) // 2] ^= 1
    assert child.btf_index(bytes(changed)) is None and child.btf_index(data[:-4]) is None
    with_index = BtfTypes(data, index=index)
    assert type_name(with_index.find_type("task_struct", "struct")) == "struct task_struct"


def test_a_head_start_nothing_asks_for_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forked, "cpus", lambda: 2)
    monkeypatch.setattr(forked, "single_threaded", lambda: True)
    debug = DebugFile(str(kt.need_dbg_vmlinux(RELEASE)))
    child = start_head_start(debug, Cache(tmp_path))
    assert child is not None
    pid = child._child.pid if child._child is not None else 0
    KernelDieIndex(debug, Cache(tmp_path), head_start=child).close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert not list(tmp_path.rglob("partial*"))


def test_a_damaged_kept_scan_is_removed_and_scanned_again(tmp_path: Path) -> None:
    """A kept scan that is cut, flipped, or sealed over a wrong claim (a name at another
    DIE, a next unit in the middle of one) is removed; the scan starts again and answers right."""
    import marshal

    from pmdb.cache import sealed, unsealed
    from pmdb.types import dwarf_index

    debug = DebugFile(str(kt.need_dbg_vmlinux(RELEASE)))
    cache = Cache(tmp_path)
    index, types = _resumed(debug, cache)
    assert types.variable_type("jiffies") is not None
    want = index.type_die("task_struct", "struct").offset
    types.close()
    (entry,) = tmp_path.rglob("partial*")
    good = entry.read_bytes()
    size, units_, next_unit, names, flags = marshal.loads(unsealed(dwarf_index._PARTIAL_KIND, good))
    moved = {k: dict(v) for k, v in names.items()}
    moved[1]["task_struct"] = moved[1]["list_head"]
    forged = [good[:len(good) // 2], good[:-1] + bytes([good[-1] ^ 1]),
              sealed(dwarf_index._PARTIAL_KIND, marshal.dumps((size, units_, next_unit + 1, names, flags))),
              sealed(dwarf_index._PARTIAL_KIND, marshal.dumps((size, units_, next_unit, moved, flags))),
              sealed(dwarf_index._PARTIAL_KIND, marshal.dumps((size, units_, "x", names, flags)))]
    for bad in forged:
        entry.write_bytes(bad)
        again, types = _resumed(DebugFile(debug.path), cache)
        assert again.type_die("task_struct", "struct").offset == want
        assert again._partial is not None and again._partial.resumed_at == 0
        assert not entry.exists()


class _WholeIndex:
    """dwarf.DieIndex over a finished NameIndex (the oracle for the partial one)."""

    def __init__(self, debug: DebugFile, whole: NameIndex) -> None:
        self.debug, self.whole = debug, whole

    def type_die(self, name: str, kind: str | None):  # type: ignore[no-untyped-def]
        raise AssertionError("not asked")

    def variable_die(self, name: str):  # type: ignore[no-untyped-def]
        off = self.whole.offset(VARIABLE, name)
        return None if off is None else _die_at(self.debug)(self.whole, off)

    def type_names(self):  # type: ignore[no-untyped-def]
        return []

    def variable_names(self):  # type: ignore[no-untyped-def]
        return []


# -- bad files ---------------------------------------------------------------------------

def _mutants(data: bytes, start: int, size: int) -> list[bytes]:
    """Copies with .debug_info cut short, zeroed, or with bytes flipped, at many places."""
    out = []
    for frac in range(1, 16):
        at = start + size * frac // 16
        out.append(data[:at] + b"\0" * (len(data) - at))
        out.append(data[:at] + bytes(b ^ 0xFF for b in data[at:at + 7]) + data[at + 7:])
        out.append(data[:at] + bytes([data[at] ^ 0x80]) + data[at + 1:])
    return out


@pytest.mark.parametrize("program", ["hashcrash-x86_64-O2", "hashcrash-i386-O2"])
def test_damaged_dwarf_never_hangs_or_escapes(program: str, tmp_path: Path) -> None:
    src = need_fixture(USER_CORES / program)
    data = src.read_bytes()
    debug = DebugFile(str(src))
    start, size = debug.sections[".debug_info"]
    abbrev = debug.sections[".debug_abbrev"]
    for i, mutant in enumerate(_mutants(data, start, size) + _mutants(data, *abbrev)):
        path = tmp_path / f"m{i}"
        path.write_bytes(mutant)
        began = time.monotonic()
        try:
            build_index(DebugFile(str(path)))
        except FormatError:
            pass
        assert time.monotonic() - began < 5


def test_found_by_release_and_build_id_a_stale_one_warned_about(tmp_path: Path) -> None:
    """debuginfo.directories in order, each in Debian's layout: a file named for the release
    whose build-id is another's is one warning; the .build-id/ link of the next is used."""
    dump = need_fixture(DUMP)
    vmlinux = kt.need_dbg_vmlinux(RELEASE)
    stale, good = tmp_path / "stale", tmp_path / "good"
    (stale / "boot").mkdir(parents=True)
    (stale / "boot" / f"vmlinux-{RELEASE}").symlink_to(need_fixture(USER_CORES / "hashcrash-x86_64-O2"))
    build_id = DebugFile(str(vmlinux)).build_id()
    (good / ".build-id" / build_id[:2]).mkdir(parents=True)
    (good / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug").symlink_to(vmlinux)
    target = open_target(str(dump), config=Config({"debuginfo.directories": [str(stale), str(good)]}))
    (warning,) = target.warnings
    assert warning.startswith(str(stale / "boot" / f"vmlinux-{RELEASE}")) and "not used" in warning
    out, err = run(target, "::print jiffies")
    assert err == "" and out == f"{target.memory.u64(target.symbols.lookup('jiffies').addr):#x}\n"  # type: ignore[union-attr]


def _pmdb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pmdb", "-q", *args], capture_output=True, text=True,
                          timeout=300)


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("pmdb: warning:")]


def test_a_mismatched_vmlinux_is_one_warning_and_not_used(tmp_path: Path) -> None:
    dump = need_fixture(DUMP)
    other = need_fixture(USER_CORES / "hashcrash-x86_64-O2")
    config = tmp_path / "pmdb.toml"
    config.write_text("[debuginfo]\ndirectories = []\n")
    proc = _pmdb("--config", str(config), str(dump), str(other), "-e", "::ps", "-e", "::print loops_per_jiffy")
    assert proc.returncode == 1            # ::print loops_per_jiffy fails: no DWARF was used
    (warning,) = _warnings(proc.stderr)
    assert str(other) in warning and "not used" in warning and "build" in warning
    assert "Traceback" not in proc.stderr and "no type is known for global 'loops_per_jiffy'" in proc.stderr
    assert proc.stdout.splitlines()[0].split()[:2] == ["PID", "PPID"]


def test_a_truncated_or_damaged_vmlinux_costs_one_line(tmp_path: Path) -> None:
    """A vmlinux cut short is not an ELF file pmdb can read: one warning. One whose
    .debug_info is damaged (its build-id intact) is used, and the first type query that
    needs it fails in one line; BTF and everything else go on."""
    dump = need_fixture(DUMP)
    vmlinux = kt.need_dbg_vmlinux(RELEASE)
    config = tmp_path / "pmdb.toml"
    config.write_text(f"[debuginfo]\ndirectories = []\n[cache]\ndirectory = '{tmp_path / 'cache'}'\n")
    cut = tmp_path / "vmlinux-cut"
    with open(vmlinux, "rb") as f:
        cut.write_bytes(f.read(64 << 20))
    proc = _pmdb("--config", str(config), str(dump), str(cut), "-e", "::ps")
    assert proc.returncode == 0 and len(_warnings(proc.stderr)) == 1 and "Traceback" not in proc.stderr
    cut.unlink()
    damaged = tmp_path / "vmlinux-damaged"
    shutil.copyfile(vmlinux, damaged)
    start, size = DebugFile(str(vmlinux)).sections[".debug_info"]
    try:
        with open(damaged, "r+b") as f:            # its first unit: every DWARF query meets it
            f.seek(start + 64)
            f.write(b"\xff" * 4096)
        proc = _pmdb("--config", str(config), str(dump), str(damaged), "-e", "::print jiffies", "-e", "::ps")
        _one_dwarf_error(proc)
        assert proc.stdout.splitlines()[0].split()[:2] == ["PID", "PPID"]
        shutil.copyfile(vmlinux, damaged)
        with open(damaged, "r+b") as f:            # a third in: only a scan that gets there meets it
            f.seek(start + size // 3)
            f.write(b"\xff" * 4096)
        proc = _pmdb("--config", str(config), str(dump), str(damaged), "-e", "::print jiffies",
                     "-e", "::sizeof struct no_such_struct_anywhere", "-e", "::ps")
        _one_dwarf_error(proc)
        assert proc.stdout.splitlines()[0] == "0xfffee012"      # jiffies was settled before the damage
        assert proc.stdout.splitlines()[1].split()[:2] == ["PID", "PPID"]
    finally:
        damaged.unlink()            # 633 MB: not left for pytest's last three runs


def _one_dwarf_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert not _warnings(proc.stderr)
    (error,) = [line for line in proc.stderr.splitlines() if not line.startswith("pmdb: indexing")]
    assert "DWARF not usable" in error, error
