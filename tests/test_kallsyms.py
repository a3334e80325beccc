"""kallsyms and module symbols decoded from the dump, against System.map and crash."""

from __future__ import annotations

import random
import re
import struct
import time
from array import array
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pmdb import forked
from pmdb.errors import CorruptionError, FormatError
from pmdb.memory.space import Segment, SegmentedSpace
from pmdb.symbols.kallsyms import (
    KallsymsTables,
    NameText,
    _names_end,
    decode_addresses,
    decode_names,
    decode_text,
    decode_text_and_crcs,
    name_crc,
    read_kallsyms,
    read_tokens,
)
from pmdb.symbols.kmodules import RegistryOffsets, module_addresses
from pmdb.symbols.table import SymbolTable
from pmdb.types.registry import TypeRegistry
from tests.conftest import need_fixture
from tests.linux_vmcore import (
    KASLR,
    Kernel,
    crash_section,
    system_map,
)

START_KERNEL_MAP = 0xFFFFFFFF80000000


def test_every_system_map_symbol_has_its_address(any_kernel: tuple[Kernel, Path]) -> None:
    kernel, _ = any_kernel
    offset = kernel.info.kernel_offset
    by_name: dict[str, set[int]] = {}
    for s in kernel.symbols:
        by_name.setdefault(s.name, set()).add(s.addr)
    matched, missing = 0, []
    for addr, letter, name in system_map():
        if name not in by_name:
            missing.append(letter)
            continue
        # KASLR shifts the image; per-CPU offsets are not relocated
        want = addr + offset if addr >= START_KERNEL_MAP else addr
        assert want in by_name[name], f"{name}: System.map {addr:#x}"
        matched += 1
    assert matched == len(kernel.symbols)  # every kallsyms symbol is in System.map
    assert set(missing) <= {"A", "D"} and len(missing) < 20  # absolute symbols kallsyms leaves out


def test_kinds_follow_the_type_letters(kernel: Kernel) -> None:
    letters = {}
    for addr, letter, name in system_map():
        if addr >= START_KERNEL_MAP:
            letters.setdefault(name, set()).add(letter)
    want = {"t": ("func", "local"), "T": ("func", "global"), "d": ("object", "local"),
            "D": ("object", "global"), "b": ("object", "local"), "B": ("object", "global"),
            "r": ("object", "local"), "R": ("object", "global"), "W": ("func", "weak")}
    checked = 0
    for s in kernel.symbols:
        seen = letters.get(s.name, set()) if s.addr >= START_KERNEL_MAP else set()
        if len(seen) == 1 and (letter := next(iter(seen))) in want:
            assert (s.kind, s.binding) == want[letter], s
            checked += 1
    assert checked > 80000


def test_decoding_is_fast(kernel: Kernel) -> None:
    tables = KallsymsTables.from_vmcoreinfo(kernel.info)
    start = time.process_time()  # CPU time: wall time says more about the machine's load
    read_kallsyms(kernel.space, tables)
    assert time.process_time() - start < 1.0  # target 0.5 s; slack for slow CI machines


@pytest.mark.parametrize("how", ["child", "no child", "child failed", "no CPU to spare"])
def test_a_decode_split_with_a_child_is_the_decode(kernel: Kernel, how: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture's ~100k records decoded in two halves, the second by a forked child (or
    here when there is none, or it fails), give the one-pass text and each name's CRC."""
    tables = KallsymsTables.from_vmcoreinfo(kernel.info)
    count = kernel.space.u32(tables.num_syms)
    tokens = read_tokens(kernel.space, tables)
    blob = kernel.space.read(tables.names, _names_end(tables) - tables.names)
    want, want_starts = decode_text(blob, count, tokens)
    monkeypatch.setattr(forked, "cpus", lambda: 2 if how != "no child" else 1)
    monkeypatch.setattr(forked, "single_threaded", lambda: True)
    real_start, started = forked.start, []

    def start(work):  # type: ignore[no-untyped-def]
        child = real_start(work if how != "child failed" else lambda: b"not marshal data")
        started.extend([child] if child is not None else [])
        return child

    busy = real_start(lambda: (time.sleep(30), b"")[1]) if how == "no CPU to spare" else None
    monkeypatch.setattr(forked, "start", start)
    try:
        text, starts, crcs = decode_text_and_crcs(blob, count, tokens)
    finally:
        if busy is not None:
            busy.cancel()
    assert (len(started) == 1) == (how in ("child", "child failed"))
    assert text == want and starts.heads == want_starts.heads and count > 90_000
    assert crcs == NameText(want).hashes() and len(crcs) == 4 * count
    names = want[1:-1].split("\0")
    for i in (0, count // 2 - 1, count // 2, count // 2 + 1, count - 1):
        assert crcs[4 * i:4 * i + 4] == name_crc(names[i][1:]), i


def test_sizes_come_from_the_next_symbol(kernel: Kernel) -> None:
    ordered = sorted(system_map())
    image = [(a + kernel.info.kernel_offset, n) for a, _, n in ordered if a >= START_KERNEL_MAP]
    sizes = {}
    for (a, n), (b, _) in zip(image, image[1:], strict=False):
        if b > a:
            sizes.setdefault(n, b - a)
    by_name = {s.name: s for s in kernel.symbols}
    for name in ("start_kernel", "panic", "do_syscall_64", "init_task", "page_offset_base"):
        assert by_name[name].size == sizes[name], name


@pytest.fixture(scope="module")
def with_modules(kernel: Kernel) -> tuple[SymbolTable, list]:
    return _with_modules(kernel)


def _with_modules(kernel: Kernel) -> tuple[SymbolTable, list]:
    """kallsyms plus every module's symbols, struct offsets from the dump's BTF."""
    from pmdb.types.btf import BtfTypes
    btf = kernel.km.btf_range()
    assert btf is not None
    registry = TypeRegistry()
    registry.add_source(BtfTypes(kernel.space, offset=btf[0], size=btf[1]))
    modules = kernel.km.load_modules(RegistryOffsets(registry))
    return kernel.km.symbols, modules


def test_bt_frames_resolve_as_crash_does(with_modules: tuple[SymbolTable, list]) -> None:
    table, _ = with_modules
    frame = re.compile(r"#\d+ \[[0-9a-f]+\] (\S+) at ([0-9a-f]+)(?: \[(\w+)\])?")
    seen = 0
    for line in crash_section(KASLR, "foreach bt"):
        m = frame.search(line)
        if m:
            sym, _ = table.resolve(int(m.group(2), 16))
            assert (sym.name, sym.module) == (m.group(1), m.group(3)), line
            seen += 1
    assert seen > 300
    sym_line = crash_section(KASLR, "sym ffffffffc023b188")[0]
    sym, off = table.resolve(0xFFFFFFFFC023B188)
    assert f"({'t' if sym.kind == 'func' else '?'}) {sym.name}+{off} [{sym.module}]" in sym_line


def test_modules_match_crash_mod(any_kernel: tuple[Kernel, Path]) -> None:
    kernel, folder = any_kernel
    _, modules = _with_modules(kernel)
    rows = [line.split() for line in crash_section(folder, "mod")[1:]]
    want = {r[1]: (int(r[0], 16), int(r[2], 16), int(r[3])) for r in rows}
    assert {m.name: (m.address, m.base, m.size) for m in modules} == want


def test_module_symbols_match_the_ko(with_modules: tuple[SymbolTable, list]) -> None:
    _, modules = with_modules
    crashdrv = next(m for m in modules if m.name == "crashdrv")
    with open(need_fixture(KASLR / "crashdrv.ko"), "rb") as f:
        elf = ELFFile(f)
        # init code is freed after loading, and its symbols with it
        ko = {(s.name, s["st_size"]) for s in elf.get_section_by_name(".symtab").iter_symbols()
              if s["st_info"]["type"] == "STT_FUNC"
              and not elf.get_section(s["st_shndx"]).name.startswith(".init")}
    got = {(s.name, s.size) for s in crashdrv.symbols if s.kind == "func"}
    assert got == ko
    bump = next(s for s in crashdrv.symbols if s.name == "crashdrv_widget_bump")
    assert bump.addr == 0xFFFFFFFFC023B188 - 5  # crash: `sym` says crashdrv_widget_bump+5


# -- units -------------------------------------------------------------------------


def test_decode_names_with_tokens_and_long_lengths() -> None:
    tokens = [chr(i) for i in range(256)]
    tokens[0x80] = "Tsys_"
    long_name = b"t" + b"x" * 200
    blob = bytes([3, 0x80]) + b"ab" + bytes([0x80 | (201 & 0x7F), 201 >> 7]) + long_name
    assert decode_names(blob, 2, tokens) == ["Tsys_ab", long_name.decode()]
    with pytest.raises(FormatError, match="end after 1 of 3"):
        decode_names(blob[:-300] + blob[4:], 3, tokens)


def test_decoded_names_are_shared_by_content_only() -> None:
    """Two tables with the same bytes share one decoding; one changed byte, or a damaged
    stream, decodes (or fails) on its own and never changes what the other says."""
    from pmdb.symbols.kallsyms import KallsymsSymbols
    tokens = [chr(i) for i in range(256)]
    blob = bytes([4]) + b"Tabc" + bytes([4]) + b"tdef"
    a, b = KallsymsSymbols(blob, 2, tokens, [1, 2]), KallsymsSymbols(bytes(blob), 2, tokens, [1, 2])
    assert a.all_names() == ["abc", "def"] and b.typed_names() is a.typed_names()
    changed = KallsymsSymbols(blob.replace(b"def", b"deg"), 2, tokens, [1, 2])
    assert changed.all_names() == ["abc", "deg"] and a.all_names() == ["abc", "def"]
    damaged = KallsymsSymbols(blob[:-2], 2, tokens, [1, 2])
    for _ in range(2):       # fails each time it is asked, from one decoding
        with pytest.raises(FormatError):
            damaged.all_names()
    assert KallsymsSymbols(blob, 2, tokens, [1, 2]).indices_named("def") == [1]


def test_name_lookups_find_every_record_of_the_name_and_no_other() -> None:
    """A lookup finds its name's CRC and checks each hit in the text: every record of the
    name, whatever its type letter, and never a longer name that ends with it, a name that
    only starts a record's text, or a name whose CRC is the same (c699378 and c18020006)."""
    import zlib

    from pmdb.symbols.kallsyms import KallsymsSymbols
    assert zlib.crc32(b"c699378") == zlib.crc32(b"c18020006")
    tokens = [chr(i) for i in range(256)]
    names = [f"{'Tt'[i % 2]}sym{i % 40}" for i in range(120)] + ["Dx_sym3", "tTsym5", "Tsym50_", ""]
    names += [f"d{'x' * (i % 120)}{i}" for i in range(400)]        # records over several 4 KiB chunks
    names += ["Tc18020006", "tc699378", "Dc699378"]
    blob = b"".join(bytes([len(n)]) + n.encode() for n in names)
    wanted = [f"sym{k}" for k in range(50)] + ["Tsym5", "x_sym3", "sym3", "nothing", "c699378",
                                               "c18020006", f"{'x' * 119}119", "x399"]

    def truth(name: str) -> list[int]:
        return [i for i, n in enumerate(names) if n[1:] == name]

    syms = KallsymsSymbols(blob, len(names), tokens, list(range(len(names))))
    got = [syms.indices_named(n) for n in wanted]
    assert got == [truth(n) for n in wanted]
    assert got[3] == [3, 43, 83] and got[-8] == [121] and got[-7] == [120] and got[45] == []
    assert got[-4] == [len(names) - 2, len(names) - 1] and got[-3] == [len(names) - 3]
    assert got[-2] == [124 + 119] and got[-1] == []
    assert syms.symbol(43).name == "sym3" and syms.symbol(43).letter == "t"
    text = syms._decoding().names
    assert [text.record(i) for i in range(len(names))] == names


def test_decode_addresses_both_modes() -> None:
    base = 0xFFFFFFFF81000000
    plain = struct.pack("<3i", 0, 0x10, 0x7FFFFFF0)
    assert list(decode_addresses(plain, 3, base)) == [base, base + 0x10, base + 0x7FFFFFF0]
    # absolute per-CPU: non-negative values are absolute, negative ones count down from base - 1
    mixed = struct.pack("<3i", 0, 0x1000, -1)
    assert list(decode_addresses(mixed, 3, base)) == [0, 0x1000, base]
    # the same rule when the table is out of order (a per-CPU offset after the others)
    unsorted = struct.pack("<3i", -1, 0x1000, -0x10)
    assert list(decode_addresses(unsorted, 3, base)) == [base, 0x1000, base + 0xF]
    # a kernel-sized table, every lane done at once (kallsyms._lanes), against the rules
    # applied one offset at a time: per-CPU offsets first, then kernel ones, and plain ones
    rng = random.Random(7)
    percpu = sorted(rng.randrange(0, 1 << 18) for _ in range(300))
    kernel = sorted((rng.randrange(-(1 << 27), 0) for _ in range(90_000)), reverse=True)
    for offs, b in ((percpu + kernel, base), (kernel, base), ([0, *sorted(-o for o in kernel)], base),
                    (percpu + kernel, 0xC1000000)):
        raw = struct.pack(f"<{len(offs)}i", *offs)
        percpu_rule = min(offs) < 0
        want = [o if o >= 0 and percpu_rule else (b + o if o >= 0 else b - 1 - o) for o in offs]
        got = decode_addresses(raw, len(offs), b)
        assert isinstance(got, array) and list(got) == want
    # offsets that would reach past 64 bits (a damaged table): the rules as they are
    assert decode_addresses(struct.pack("<2i", 0, -(1 << 31)), 2, base) == [0, base - 1 + (1 << 31)]
    # Linux 7.0: place-relative, each offset from its own slot of the array at 'at'
    at = 0xFFFFFFFF856A0AA0
    placed = struct.pack("<3i", -0x18A0AA0, -0x18A0AA4, 0x100)
    assert decode_addresses(placed, 3, None, at) == [0xFFFFFFFF83E00000, 0xFFFFFFFF83E00000, at + 8 + 0x100]


def test_bad_symbol_count_is_a_format_error(kernel: Kernel) -> None:
    tables = KallsymsTables.from_vmcoreinfo(kernel.info)
    fake = SegmentedSpace([Segment(tables.num_syms, 8, _Const(b"\xff\xff\xff\xff\0\0\0\0"))])
    with pytest.raises(FormatError, match="kallsyms_num_syms is 4294967295"):
        read_kallsyms(fake, tables)


def test_cyclic_module_list_is_corruption() -> None:
    # head -> a -> b -> a: never returns to the head
    words = {0x1000: 0x2000, 0x2000: 0x3000, 0x3000: 0x2000}
    blob = bytearray(0x3000)
    for addr, value in words.items():
        struct.pack_into("<Q", blob, addr - 0x1000, value)
    mem = SegmentedSpace([Segment(0x1000, len(blob), _Const(bytes(blob)))])
    with pytest.raises(CorruptionError, match="loops"):
        list(module_addresses(mem, 0x1000, 8))


class _Const:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_at(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]
