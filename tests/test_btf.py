"""BTF as a type source, checked against the real kernel.

Oracles: the kernel's own VMCOREINFO (SIZE/OFFSET/LENGTH it computed from its
real layout), System.map (per-CPU variable offsets), crash's `ps` and `struct`
output (read through BTF offsets from the dump's memory), gcc compiling the
uapi header of qemu_fw_cfg (whose split BTF sits in the dump's memory), and a
small BTF builder here for the encodings the kernel blob does not use.
"""

from __future__ import annotations

import lzma
import mmap
import re
import struct
import subprocess
import time
from pathlib import Path

import pytest

from pmdb.errors import FaultError, FormatError, PmdbError
from pmdb.types import btf_format as f
from pmdb.types.btf import BtfTypes
from pmdb.types.model import type_name
from tests.conftest import FIXTURES, need_fixture

LINUX = FIXTURES / "linux-6.1-x86_64"
PAGE_OFFSET_BASE = 0xFFFF8BE100000000   # README: the randomized direct map of this dump
KERNEL_MAP = 0xFFFFFFFF80000000         # README: image vaddr -> phys with phys_base
PHYS_BASE = -0x4E00000


@pytest.fixture(scope="module")
def raw() -> bytes:
    return lzma.decompress(need_fixture(LINUX / "vmlinux-6.1.0-56-amd64.btf.xz").read_bytes())


@pytest.fixture(scope="module")
def vmlinux(raw: bytes) -> BtfTypes:
    return BtfTypes(raw)


# -- the real kernel --------------------------------------------------------------

def _vmcoreinfo() -> list[tuple[str, str, int]]:
    text = need_fixture(LINUX / "vmcoreinfo.txt").read_text()
    return [(m[1], m[2], int(m[3])) for m in re.finditer(r"^(SIZE|OFFSET|LENGTH)\((.+?)\)=(-?\d+)$", text, re.M)]


def _named(btf: BtfTypes, name: str):
    for kind in ("struct", "union", None):
        t = btf.find_type(name, kind)
        if t is not None:
            return t
    return None


# LENGTH() entries that name an array member under another spelling (kernel/printk/printk.c)
_LENGTH_ALIASES = {"printk_info_subsystem": "dev_printk_info.subsystem",
                   "printk_info_device": "dev_printk_info.device"}
# LENGTH() of global arrays: BTF has no types for (non-per-CPU) variables
_VARIABLES = {"mem_section", "node_data"}


def test_every_vmcoreinfo_size_and_offset(vmlinux: BtfTypes) -> None:
    checked, skipped = 0, []
    for what, name, want in _vmcoreinfo():
        name = _LENGTH_ALIASES.get(name, name) if what == "LENGTH" else name
        if what == "LENGTH" and name in _VARIABLES:
            skipped.append(name)
            continue
        tname, _, member = name.partition(".")
        t = _named(vmlinux, tname)
        assert t is not None, f"{what}({name}): no type {tname!r} in BTF"
        if what == "SIZE":
            got = t.sizeof()
        else:
            found = t.find_member(member)
            assert found is not None, f"{what}({name}): no member {member!r}"
            m, bit_off = found
            got = bit_off // 8 if what == "OFFSET" else m.type.strip().count
        assert got == want, f"{what}({name}) = {want} in VMCOREINFO, {got} from BTF"
        checked += 1
    assert sorted(skipped) == sorted(_VARIABLES) and checked == len(_vmcoreinfo()) - len(skipped) >= 69


def test_percpu_variables_match_system_map(vmlinux: BtfTypes) -> None:
    text = lzma.decompress(need_fixture(LINUX / "System.map-6.1.0-56-amd64.xz").read_bytes()).decode()
    smap: dict[str, set[int]] = {}
    for m in re.finditer(r"^([0-9a-f]{16}) [dDbB] (\w+)$", text, re.M):
        smap.setdefault(m[2], set()).add(int(m[1], 16))    # static names repeat across files
    section = vmlinux.datasec(".data..percpu")
    assert len(section) > 300
    for name, offset, size in section:
        assert offset in smap[name], name
        assert vmlinux.variable_type(name).sizeof() == size, name
    assert type_name(vmlinux.variable_type("runqueues")) == "struct rq"
    assert type_name(vmlinux.variable_type("current_task")) == "struct task_struct *"
    assert vmlinux.variable_type("jiffies") is None       # not per-CPU: BTF has no VAR for it


def test_type_spellings_and_navigation(vmlinux: BtfTypes) -> None:
    task = vmlinux.find_type("task_struct", "struct")
    assert type_name(task) == "struct task_struct"
    comm, _ = task.find_member("comm")
    assert type_name(comm.type) == "char [16]" and comm.type.sizeof() == 16
    tasks, _ = task.find_member("tasks")
    assert type_name(tasks.type) == "struct list_head"
    nxt = tasks.type.members[0]
    assert (nxt.name, type_name(nxt.type), nxt.type.target is tasks.type) == ("next", "struct list_head *", True)
    assert vmlinux.find_type("bool").strip().kind == "bool"
    assert vmlinux.find_type("u64").strip().size == 8 and not vmlinux.find_type("u64").strip().signed
    assert vmlinux.find_type("s32").strip().signed
    assert vmlinux.find_type("no_such_type_anywhere", "struct") is None
    assert "struct task_struct" in set(vmlinux.type_names())


def test_anonymous_unions_in_struct_page(vmlinux: BtfTypes) -> None:
    page = vmlinux.find_type("page", "struct")
    assert "lru" not in [m.name for m in page.members]          # it lives in an anonymous union
    m, bit_off = page.find_member("compound_head")
    assert bit_off == 64 and type_name(m.type) == "long unsigned int"
    m, bit_off = page.find_member("_mapcount")
    assert type_name(m.type) == "atomic_t" and bit_off == 48 * 8


def test_bitfields_enums_and_prototypes(vmlinux: BtfTypes) -> None:
    task = vmlinux.find_type("task_struct", "struct")
    bits = {m.name: m for m in task.members if m.bit_size}
    assert bits["sched_reset_on_fork"].bit_size == 1
    assert bits["sched_contributes_to_load"].bit_offset == bits["sched_reset_on_fork"].bit_offset + 1
    pid_type = vmlinux.find_type("pid_type", "enum")
    assert pid_type.enumerators == [("PIDTYPE_PID", 0), ("PIDTYPE_TGID", 1), ("PIDTYPE_PGID", 2),
                                    ("PIDTYPE_SID", 3), ("PIDTYPE_MAX", 4)]
    assert dict(vmlinux.find_type("rpm_status", "enum").enumerators)["RPM_INVALID"] == -1
    ops = vmlinux.find_type("file_operations", "struct")
    read, _ = ops.find_member("read")
    assert type_name(read.type) == "ssize_t (*)(struct file *, char *, size_t, loff_t *)"
    printk = vmlinux.function_type("_printk")
    assert printk.variadic and type_name(printk.target) == "int"
    assert [type_name(p) for p in printk.params] == ["const char *"]


def test_every_type_builds(vmlinux: BtfTypes) -> None:
    """No id of the real blob is refused or loops (no false cycle alarms)."""
    for tid in range(1, vmlinux.end_id):
        if vmlinux.kind_of(tid) in (f.DATASEC, f.DECL_TAG):
            continue
        t = vmlinux.type_by_id(tid)
        type_name(t)
        for m in t.members:
            type_name(m.type)


def test_registry_and_c_spellings(vmlinux: BtfTypes) -> None:
    from pmdb.types.registry import TypeRegistry

    reg = TypeRegistry()
    reg.add_source(vmlinux)
    assert reg.lookup("struct list_head *").target is vmlinux.find_type("list_head", "struct")
    assert reg.lookup("task_struct") is vmlinux.find_type("task_struct", "struct")
    for spelling, size, signed in (("unsigned long", 8, False), ("long", 8, True), ("unsigned", 4, False),
                                   ("short", 2, True), ("unsigned long long", 8, False), ("char", 1, True)):
        t = reg.lookup(spelling)
        assert (t.size, t.signed) == (size, signed), spelling


def test_open_and_first_lookup_timing(raw: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the figures (speed is for bench/: no timed assertion) and checks the lookup."""
    start = time.perf_counter()
    btf = BtfTypes(raw)
    opened = time.perf_counter()
    task = btf.find_type("task_struct", "struct")
    names = [(m.name, type_name(m.type)) for m in task.members]
    done = time.perf_counter()
    with capsys.disabled():
        print(f"\nBTF {len(raw) / 1e6:.1f} MB, {len(btf)} types: open {1e3 * (opened - start):.0f} ms, "
              f"+ task_struct with {len(names)} members {1e3 * (done - opened):.0f} ms")
    assert ("pid", "pid_t") in names and len(names) > 200


# -- the dump's memory ------------------------------------------------------------

@pytest.fixture(scope="module")
def phys():
    """Physical memory of the ELF vmcore (decompressed once into pmdb's cache), read
    here by hand so the oracle does not depend on pmdb's own translation."""
    from pmdb.dumps.zst import decompressed

    with open(decompressed(str(need_fixture(LINUX / "vmcore.elf.zst"))), "rb") as fh:
        mem = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    phoff, phnum = struct.unpack_from("<Q", mem, 0x20)[0], struct.unpack_from("<H", mem, 0x38)[0]
    for i in range(phnum):
        ptype, _, off, _, paddr = struct.unpack_from("<IIQQQ", mem, phoff + 56 * i)
        if ptype == 1 and paddr == 0:
            yield memoryview(mem)[off:]
            return
    pytest.fail("no PT_LOAD at physical 0")


def _crash_ps() -> list[tuple[int, int, int, str, str]]:
    text = need_fixture(LINUX / "crash-oracle.txt").read_text()
    ps = text.split("crash> ps\n", 1)[1].split("crash>", 1)[0]
    rows = re.findall(r"^[> ]\s+(\d+)\s+\d+\s+(\d+)\s+([0-9a-f]{16})\s+(\w\w)\s.*?\s(\S+)$", ps, re.M)
    return [(int(p), int(c), int(a, 16), st, comm.strip("[]")) for p, c, a, st, comm in rows]


def _task_phys(addr: int) -> int:
    return addr - KERNEL_MAP + PHYS_BASE if addr >= KERNEL_MAP else addr - PAGE_OFFSET_BASE


def test_tasks_read_through_btf_offsets_match_crash(vmlinux: BtfTypes, phys) -> None:
    task = vmlinux.find_type("task_struct", "struct")

    def field(base: int, path: str) -> bytes:
        t, off = task, 0
        for part in path.split("."):
            m, bits = t.find_member(part)
            t, off = m.type, off + bits // 8
        return bytes(phys[base + off:base + off + t.sizeof()])

    # TASK_* values (include/linux/sched.h); 6.1 adds TASK_FREEZABLE (0x2000), which crash ignores
    states = {"RU": 0, "IN": 1, "UN": 2, "ID": 0x402}
    rows = _crash_ps()
    assert len(rows) == 60
    for pid, cpu, addr, st, comm in rows:
        base = _task_phys(addr)
        assert int.from_bytes(field(base, "pid"), "little") == pid
        assert field(base, "comm").split(b"\0")[0].decode() == comm
        assert int.from_bytes(field(base, "thread_info.cpu"), "little") == cpu
        if st in states and pid:
            assert int.from_bytes(field(base, "__state"), "little") & 0x403 == states[st], (pid, st)
    oracle = (LINUX / "crash-oracle.txt").read_text().split("crash> struct task_struct.pid,comm", 1)[1]
    assert "pid = 102," in oracle and 'comm = "crashapp' in oracle


def _btf_blobs(phys) -> list[bytes]:
    """Every well-formed-looking BTF header in physical memory, with its bytes."""
    out = []
    for m in re.finditer(rb"\x9f\xeb\x01\x00\x18\x00\x00\x00", phys):
        hdr = f.parse_header(bytes(phys[m.start():m.start() + 24]))
        out.append(bytes(phys[m.start():m.start() + hdr.total]))
    return out


def _gcc_layout(tmp_path: Path, header: str, fields: dict[str, list[str]]) -> dict[str, int]:
    """sizeof/offsetof as gcc computes them from a uapi header."""
    lines = [f"#include <{header}>", "#include <stdio.h>", "#include <stddef.h>", "int main(void) {"]
    for st, members in fields.items():
        lines.append(f'printf("{st} %zu\\n", sizeof(struct {st}));')
        lines += [f'printf("{st}.{m} %zu\\n", offsetof(struct {st}, {m}));' for m in members]
    (tmp_path / "layout.c").write_text("\n".join(lines + ["return 0; }"]))
    subprocess.run(["gcc", "-o", str(tmp_path / "layout"), str(tmp_path / "layout.c")], check=True)
    run = subprocess.run([str(tmp_path / "layout")], check=True, capture_output=True, text=True)
    return {k: int(v) for k, v in (line.split() for line in run.stdout.splitlines())}


def test_module_split_btf_from_the_dump(vmlinux: BtfTypes, raw: bytes, phys, tmp_path: Path) -> None:
    blobs = _btf_blobs(phys)
    assert raw in blobs                       # the fixture is the dumped kernel's own BTF
    modules = []
    for blob in blobs:
        if blob == raw:
            continue
        try:
            modules.append(BtfTypes(blob, base=vmlinux))
        except FormatError:
            continue                          # a stale, partly overwritten copy: refused, not crashed
    fw_cfg = [m for m in modules if m.find_id("fw_cfg_vmcoreinfo", "struct") is not None]
    assert fw_cfg, "qemu_fw_cfg's module BTF not found in memory"
    mod = fw_cfg[0]
    assert mod.start_id == vmlinux.end_id
    fields = {"fw_cfg_file": ["size", "select", "reserved", "name"],
              "fw_cfg_dma_access": ["control", "length", "address"],
              "fw_cfg_vmcoreinfo": ["host_format", "guest_format", "size", "paddr"]}
    want = _gcc_layout(tmp_path, "linux/qemu_fw_cfg.h", fields)
    for st, members in fields.items():
        t = mod.find_type(st, "struct")
        assert t.sizeof() == want[st]
        assert [m.name for m in t.members] == members
        for m in t.members:
            assert m.offset == want[f"{st}.{m.name}"]
    entry = mod.find_type("fw_cfg_sysfs_entry", "struct")
    kobj, _ = entry.find_member("kobj")
    assert kobj.type is vmlinux.find_type("kobject", "struct")     # member types come from the base
    assert mod.find_type("task_struct", "struct") is vmlinux.find_type("task_struct", "struct")


def test_crashdrv_ko_has_no_btf_section() -> None:
    """crashdrv was built out of tree without pahole: its types exist only as DWARF."""
    from elftools.elf.elffile import ELFFile

    with need_fixture(LINUX / "crashdrv.ko").open("rb") as fh:
        elf = ELFFile(fh)
        assert elf.get_section_by_name(".BTF") is None
        assert elf.get_section_by_name(".debug_info") is not None


# -- bad input on the real blob ----------------------------------------------------

def _must_refuse(data: bytes, *, query: bool = False) -> str:
    with pytest.raises(FormatError) as err:
        btf = BtfTypes(data)
        if query:
            for m in btf.find_type("task_struct", "struct").members:
                type_name(m.type)
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


def test_truncated_anywhere(raw: bytes) -> None:
    for cut in (0, 3, 23, 24, 25, 4096, len(raw) // 3, len(raw) // 2, len(raw) - 1_800_000, len(raw) - 1):
        _must_refuse(raw[:cut])


def test_bad_header_fields(raw: bytes) -> None:
    assert "magic" in _must_refuse(b"\x00\x00" + raw[2:])
    assert "version" in _must_refuse(raw[:2] + b"\x02" + raw[3:])
    bad = bytearray(raw)
    struct.pack_into("<I", bad, 8, len(raw))           # type_off far past the end
    assert "type section" in _must_refuse(bytes(bad))
    bad = bytearray(raw)
    struct.pack_into("<I", bad, 20, 0xFFFFFFF0)        # str_len absurd
    assert "string section" in _must_refuse(bytes(bad))


def _record_of(btf: BtfTypes, raw: bytes, name: str, kind: str) -> int:
    """Byte offset in raw of a named type's record."""
    tid = btf.find_id(name, kind)
    return 24 + btf.header.type_off + 4 * btf._offs[tid - btf.start_id]


def test_huge_vlen_and_unknown_kind(vmlinux: BtfTypes, raw: bytes) -> None:
    last = 24 + vmlinux.header.type_off + 4 * vmlinux._offs[-1]
    bad = bytearray(raw)
    struct.pack_into("<I", bad, last + 4, (f.STRUCT << 24) | 0xFFFF)
    assert "vlen 65535) runs past the end" in _must_refuse(bytes(bad))
    at = _record_of(vmlinux, raw, "list_head", "struct")
    bad = bytearray(raw)
    bad[at + 7] = (bad[at + 7] & 0x80) | 25            # kind 25 does not exist
    assert "unknown kind 25" in _must_refuse(bytes(bad))


def test_string_offset_and_type_id_out_of_range(vmlinux: BtfTypes, raw: bytes) -> None:
    at = _record_of(vmlinux, raw, "task_struct", "struct")
    bad = bytearray(raw)
    struct.pack_into("<I", bad, at + 12, 0x7FFFFFF)    # first member's name
    assert "string offset" in _must_refuse(bytes(bad), query=True)
    bad = bytearray(raw)
    struct.pack_into("<I", bad, at + 16, 0x7FFFFFF)    # first member's type id
    assert "type id" in _must_refuse(bytes(bad), query=True)


def test_byte_sources(raw: bytes) -> None:
    class Source:
        def __init__(self, end: int) -> None:
            self.end = end

        def read_at(self, offset: int, n: int) -> bytes:
            if offset + n > self.end:
                raise FaultError(offset, n, "not in the dump")
            return (b"\xcc" * 100 + raw)[offset:offset + n]

    btf = BtfTypes(Source(100 + len(raw)), offset=100, size=len(raw))
    assert btf.find_type("list_head", "struct").sizeof() == 16
    with pytest.raises(FormatError, match="cannot read the BTF: .* not in the dump"):
        BtfTypes(Source(100 + len(raw) // 2), offset=100)
    with pytest.raises(FormatError, match="past the end"):
        BtfTypes(Source(100 + len(raw)), offset=100, size=len(raw) // 2)


# -- encodings the kernel blob lacks, from a small builder --------------------------

class Builder:
    """Writes BTF records by hand (ids from start_id, strings after start_str)."""

    def __init__(self, start_id: int = 1, start_str: int = 0) -> None:
        self.types = bytearray()
        self.strs = bytearray(b"" if start_str else b"\0")
        self.start_str = start_str
        self.next_id = start_id

    def s(self, text: str) -> int:
        if not text:
            return 0
        off = self.start_str + len(self.strs)
        self.strs += text.encode() + b"\0"
        return off

    def add(self, kind: int, name: str = "", ref: int = 0, vlen: int = 0, kflag: int = 0, extra: bytes = b"") -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self.s(name), info, ref) + extra
        self.next_id += 1
        return self.next_id - 1

    def members(self, items: list[tuple[str, int, int]]) -> bytes:
        return b"".join(struct.pack("<III", self.s(n), t, o) for n, t, o in items)

    def blob(self, big: bool = False) -> bytes:
        order = ">" if big else "<"
        hdr = struct.pack(order + "HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strs))
        types = self.types
        if big:  # every field in a record is a u32
            types = b"".join(struct.pack(">I", w) for (w,) in struct.iter_unpack("<I", types))
        return hdr + bytes(types) + bytes(self.strs)


def _sample() -> Builder:
    b = Builder()
    i32 = b.add(f.INT, "int", 4, extra=struct.pack("<I", (f.INT_SIGNED << 24) | 32))
    u32 = b.add(f.INT, "unsigned int", 4, extra=struct.pack("<I", 32))
    old3 = b.add(f.INT, "unsigned int", 4, extra=struct.pack("<I", (2 << 16) | 3))  # pre-kind_flag bitfield
    fwd = b.add(f.FWD, "node")
    ptr = b.add(f.PTR, ref=fwd)
    tag = b.add(f.TYPE_TAG, "rcu", ref=ptr)
    b.add(f.STRUCT, "node", 16, vlen=3,
          extra=b.members([("next", tag, 0), ("flags", old3, 64), ("val", i32, 96)]))
    b.add(f.STRUCT, "packed", 4, vlen=2, kflag=1,
          extra=b.members([("lo", u32, (4 << 24) | 0), ("hi", u32, (28 << 24) | 4)]))
    b.add(f.ENUM, "sign", 4, vlen=2, kflag=1, extra=struct.pack("<IiIi", b.s("NEG"), -5, b.s("POS"), 7))
    b.add(f.ENUM64, "wide", 8, vlen=1, extra=struct.pack("<III", b.s("BIG"), 0, 0x80000000))
    proto = b.add(f.FUNC_PROTO, ref=i32, vlen=2, extra=struct.pack("<IIII", b.s("fmt"), ptr, 0, 0))
    b.add(f.FUNC, "logf", proto, vlen=1)
    var = b.add(f.VAR, "counter", u32, extra=struct.pack("<I", 1))
    b.add(f.DATASEC, ".data..percpu", 4, vlen=1, extra=struct.pack("<III", var, 0x40, 4))
    return b


@pytest.mark.parametrize("big", [False, True])
def test_synthetic_encodings(big: bool) -> None:
    btf = BtfTypes(_sample().blob(big))
    node = btf.find_type("node", "struct")
    nxt, flags, val = node.members
    assert nxt.type.target is node and type_name(nxt.type) == "struct node *"   # tag skipped, fwd resolved
    assert (flags.bit_offset, flags.bit_size, val.offset) == (66, 3, 12)
    lo, hi = btf.find_type("packed", "struct").members
    assert (lo.bit_offset, lo.bit_size, hi.bit_offset, hi.bit_size) == (0, 4, 4, 28)
    assert btf.find_type("sign", "enum").enumerators == [("NEG", -5), ("POS", 7)]
    assert btf.find_type("wide", "enum").enumerators == [("BIG", 1 << 63)]
    assert type_name(btf.function_type("logf")) == "int (struct node *, ...)"
    assert type_name(btf.variable_type("counter")) == "unsigned int"
    assert btf.datasec(".data..percpu") == [("counter", 0x40, 4)]


def test_split_numbering() -> None:
    base = BtfTypes(_sample().blob())
    b = Builder(start_id=base.end_id, start_str=base.end_str)
    node_ptr = b.add(f.PTR, ref=base.find_id("node", "struct"))
    b.add(f.STRUCT, "holder", 8, vlen=1, extra=b.members([("val", node_ptr, 0)]))
    b.add(f.TYPEDEF, "holder_t", ref=b.next_id - 1)
    split = BtfTypes(b.blob(), base=base)
    holder = split.find_type("holder_t").strip()
    assert holder.name == "holder" and holder.members[0].name == "val"
    assert holder.members[0].type.target is base.find_type("node", "struct")
    # a member name may be a base string: 'val' at the base's offset
    b2 = Builder(start_id=base.end_id, start_str=base.end_str)
    b2.add(f.STRUCT, "other", 4, vlen=1, extra=struct.pack("<III", next(base._string_offsets("val")), 1, 0))
    assert BtfTypes(b2.blob(), base=base).find_type("other", "struct").members[0].name == "val"


def test_cycles_are_refused_not_followed() -> None:
    b = Builder()
    b.add(f.TYPEDEF, "a_t", ref=2)
    b.add(f.CONST, ref=1)
    p = b.add(f.PTR, ref=4)
    b.add(f.PTR, ref=p)
    b.add(f.STRUCT, "s", 8, vlen=1, extra=b.members([("p", p, 0)]))
    btf = BtfTypes(b.blob())
    with pytest.raises(FormatError, match="refers to itself"):
        btf.find_type("a_t").strip()
    with pytest.raises(FormatError, match="refers to itself"):
        type_name(btf.find_type("s", "struct").members[0].type.target)


def test_random_corruption_never_escapes() -> None:
    """Flipped bytes give a FormatError or a usable type, never a raw exception."""
    import random

    good = _sample().blob()
    rng = random.Random(3)
    for _ in range(3000):
        bad = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(4, len(bad))] = rng.randrange(256)
        try:
            btf = BtfTypes(bytes(bad))
            for tid in range(1, btf.end_id):
                t = btf.type_by_id(tid)
                type_name(t)
                t.sizeof()
                assert isinstance(t.enumerators, list)
                for m in t.members:
                    type_name(m.type)
            list(btf.type_names())
            btf.datasec(".data..percpu")
        except PmdbError:
            pass


# -- end to end: BTF found in each dump through pmdb's kernel memory and kallsyms ----

DUMPS = [("linux-6.1-x86_64", "dump.202611221942"), ("linux-6.1-x86_64", "vmcore.flat"),
         ("linux-6.1-x86_64-nokaslr", "dump.202611221946"), ("linux-6.1-x86_64-slub", "dump.202611222031")]


@pytest.mark.parametrize("folder,dump", DUMPS)
def test_btf_from_each_dump(folder: str, dump: str, raw: bytes) -> None:
    from pmdb.types.btf_kernel import module_btfs, vmlinux_btf
    from tests.linux_vmcore import crash_section, open_kernel

    where = FIXTURES / folder
    kernel = open_kernel(need_fixture(where / dump))
    start = time.perf_counter()
    btf = vmlinux_btf(kernel.space, kernel.by_name.get)
    task = btf.find_type("task_struct", "struct")
    opened = time.perf_counter() - start
    assert kernel.space.read(kernel.by_name["__start_BTF"], len(raw)) == raw   # the same kernel build
    assert opened < 1.0, f"BTF open + task_struct took {opened:.3f} s"   # ~0.15 s: 4.4 MB of zlib pages
    pid_off, comm_off = task.find_member("pid")[1] // 8, task.find_member("comm")[1] // 8
    rows = [line.split() for line in crash_section(where, "ps")[1:]]
    assert len(rows) > 50
    for row in rows:
        row = row[1:] if row[0] == ">" else row
        addr, comm = int(row[3], 16), row[-1].strip("[]")
        assert kernel.space.u32(addr + pid_off) == int(row[0])
        assert kernel.space.read(addr + comm_off, 16).split(b"\0")[0].decode() == comm
    mods = {m.name: m.types for m in module_btfs(kernel.space, btf, kernel.by_name.get)}
    assert set(mods) == {"qemu_fw_cfg"}      # crashdrv was built without BTF (see below)
    entry = mods["qemu_fw_cfg"].find_type("fw_cfg_sysfs_entry", "struct")
    assert entry.find_member("kobj")[0].type is btf.find_type("kobject", "struct")


def test_module_list_loop_is_corruption(vmlinux: BtfTypes) -> None:
    """A btf_modules list that never comes back to its head ends in one error."""
    from pmdb.errors import CorruptionError
    from pmdb.types.btf_kernel import module_btfs

    class Space:                       # two nodes pointing at each other, never at the head
        ptr_size = 8

        def ptr(self, addr: int) -> int:
            return {0x1000: 0x2000, 0x2000: 0x3000, 0x3000: 0x2000}.get(addr, 0x9000)

        def read(self, addr: int, n: int) -> bytes:
            return b"m\0".ljust(n, b"\0")

        def u32(self, addr: int) -> int:
            return 100

        def read_at(self, addr: int, n: int) -> bytes:
            return self.read(addr, n)

    with pytest.raises(FormatError):   # each node's "BTF" is garbage: refused by name
        module_btfs(Space(), vmlinux, {"btf_modules": 0x1000}.get)

    class Looping(Space):
        def read(self, addr: int, n: int) -> bytes:
            return raw_blob[:n] if addr == 0x9000 else super().read(addr, n)

        def u32(self, addr: int) -> int:
            return len(raw_blob)

    raw_blob = _sample().blob()
    with pytest.raises(CorruptionError, match="loops"):
        module_btfs(Looping(), vmlinux, {"btf_modules": 0x1000}.get)


def test_vmlinux_btf_cache(raw: bytes, tmp_path: Path) -> None:
    """The copy is keyed by the BTF's content and used when it fits; a damaged one is removed
    and the dump read again; a BTF without the types pmdb needs is never kept."""
    from pmdb.cache import Cache
    from pmdb.memory.space import Segment, SegmentedSpace
    from pmdb.types.btf_kernel import vmlinux_btf

    class Space(SegmentedSpace):
        reads = 0

        def read(self, addr: int, n: int) -> bytes:
            Space.reads += 1            # whole reads; the content key reads through mapping()
            return super().read(addr, n)

    def space(blob: bytes) -> Space:
        return Space([Segment(0x1000, len(blob), _Bytes(blob))])

    syms = {"__start_BTF": 0x1000, "__stop_BTF": 0x1000 + len(raw)}.get
    cache = Cache(tmp_path)
    assert vmlinux_btf(space(raw), syms, cache, "b1d").find_type("list_head", "struct").sizeof() == 16
    (kept,) = (tmp_path / "btf").iterdir()
    good = kept.read_bytes()
    assert kept.name.startswith("btfidx1-b1d-") and raw in good and Space.reads == 1
    assert vmlinux_btf(space(raw), syms, cache, "b1d").find_type("list_head", "struct").sizeof() == 16
    assert Space.reads == 1
    kept.write_bytes(b"\0" * len(good))         # damaged on disk: removed, the dump read again
    assert vmlinux_btf(space(raw), syms, cache, "b1d").find_type("page", "struct").sizeof() == 64
    assert Space.reads == 2 and kept.read_bytes() == good
    at = good.index(b"task_struct\0")           # one byte of a name changed: the checksum says so
    kept.write_bytes(good[:at] + b"T" + good[at + 1:])
    assert vmlinux_btf(space(raw), syms, cache, "b1d").find_type("task_struct", "struct") is not None
    assert Space.reads == 3 and kept.read_bytes() == good
    small = _sample().blob()                     # parses, but has no task_struct: not kept
    syms_small = {"__start_BTF": 0x1000, "__stop_BTF": 0x1000 + len(small)}.get
    vmlinux_btf(space(small), syms_small, cache, "b1d")
    assert len(list((tmp_path / "btf").iterdir())) == 1
    with pytest.raises(FormatError, match="without BTF"):
        vmlinux_btf(space(raw), {}.get)


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_at(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]


def test_a_hostile_dump_cannot_poison_another_dumps_btf(tmp_path: Path) -> None:
    """Issue 13: a dump of the same build with one BTF string changed ('tasks' -> 'tasKs')
    wrote its BTF under the build's name, and the intact dump then failed ::ps. Copies are
    keyed by content now: each dump finds its own."""
    import io

    from pmdb.config import Config
    from pmdb.opener import cache_of, open_target
    from pmdb.session import Session
    from tests.fuzz.overlay import open_physically_patched
    from tests.linux_vmcore import KASLR, open_kernel

    path = need_fixture(KASLR / "dump.202611221942")
    kernel = open_kernel(path)
    start = kernel.by_name["__start_BTF"]
    blob = kernel.space.read(start, kernel.by_name["__stop_BTF"] - start)
    at = start + blob.index(b"\0tasks\0") + 4             # the 'k'
    phys = kernel.space.mapping(at, 1)[0].offset
    config = Config({"cache.directory": str(tmp_path)})
    hostile = open_physically_patched(str(path), {phys: b"K"}, cache_of(config))
    assert hostile.types.find("struct task_struct").find_member("tasks") is None
    intact = open_target(str(path), config=config)
    assert len(list((tmp_path / "btf").iterdir())) == 2      # one copy per content
    out, err = io.StringIO(), io.StringIO()
    Session(intact, stdout=out, stderr=err).run_line("::ps")
    assert err.getvalue() == "" and len(out.getvalue().splitlines()) > 50
