"""The kernel log against crash's ``log`` on every fixture dump, and a ring that wraps.

Oracles: crash 8.0.6's ``log`` in each folder's crash-oracle.txt (same on
every format, per the README), the serial console (console.log) for the
levels pmdb reads from the bit field VMCOREINFO does not describe, and a
small writer below that fills a ring the way kernel/printk/printk_ringbuffer.c
does (data blocks that wrap to offset 0, descriptor slots reused), for the
cases the fixtures' young rings never reach.
"""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import pytest

from pmdb.dumps.detect import open_dump
from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FaultError, FormatError, SymbolError
from pmdb.memory.space import Segment, SegmentedSpace
from pmdb.os.linux.mm.kernel_memory import load_kernel_memory
from pmdb.os.linux.printk.ring import LogRecord, crash_lines, read_log, text_lines
from tests.conftest import FIXTURES, need_fixture
from tests.linux_vmcore import KASLR, NOKASLR, crash_section, every_dump

SLUB = FIXTURES / "linux-6.1-x86_64-slub"
DUMPS = [*every_dump(), SLUB / "dump.202611222031"]


def _folder(path: Path) -> Path:
    return path.parent


def _records(path: Path) -> list[LogRecord]:
    dump = open_dump(str(need_fixture(path)))
    km = load_kernel_memory(dump.space(), dump.vmcoreinfo)  # type: ignore[attr-defined]
    return read_log(km.space, km.info)


@pytest.fixture(scope="module", params=DUMPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def dump_records(request: pytest.FixtureRequest) -> tuple[Path, list[LogRecord]]:
    return request.param, _records(request.param)


def test_log_lines_are_crashs(dump_records: tuple[Path, list[LogRecord]]) -> None:
    path, records = dump_records
    ours = [line for rec in records for line in crash_lines(rec)]
    assert ours == crash_section(_folder(path), "log")


def test_text_lines_are_crashs_without_timestamps(dump_records: tuple[Path, list[LogRecord]]) -> None:
    path, records = dump_records
    stamp = re.compile(r"^\[\s*\d+\.\d{6}\] |^ {15}")
    theirs = [stamp.sub("", line, count=1) for line in crash_section(_folder(path), "log")]
    assert [line for rec in records for line in text_lines(rec)] == theirs


def test_sequence_numbers_follow_the_ids(dump_records: tuple[Path, list[LogRecord]]) -> None:
    _, records = dump_records
    seqs = [r.seq for r in records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_levels_match_the_console() -> None:
    """loglevel=7 put every record with level < 7 on the serial console, and nothing else;
    the panic lines are KERN_EMERG (0)."""
    records = _records(KASLR / "dump.202611221942")
    console = need_fixture(KASLR / "console.log").read_text(errors="replace")
    shown = [r for r in records if r.level < 7 and r.text]
    hidden = [r for r in records if r.level == 7 and r.text]
    assert hidden, "the dump holds debug-level records"
    for rec in shown:
        assert rec.text.decode(errors="replace").split("\n")[0] in console
    for rec in hidden:
        assert f"] {rec.text.decode(errors='replace')}\n" not in console
    panic = next(r for r in records if r.text.startswith(b"Kernel panic - not syncing"))
    assert panic.level == 0 and panic.caller == "T102"   # README: crashapp, pid 102


def test_facility_user_is_what_init_wrote_to_dev_kmsg() -> None:
    """The README: init wrote the marker lines to /dev/kmsg, which logs them as LOG_USER."""
    for folder, path in ((KASLR, "dump.202611221942"), (NOKASLR, "dump.202611221946")):
        user = [r.text for r in _records(folder / path) if r.facility == 1]
        assert user and all(t.startswith(b"pmdb-fixture marker") for t in user)


def test_device_info_is_kept() -> None:
    records = _records(KASLR / "dump.202611221942")
    acpi = [r for r in records if r.text.startswith(b"acpi PNP0A08:00: ")]
    assert acpi and all(r.subsystem == "acpi" and r.device == "+acpi:PNP0A08:00" for r in acpi)


# -- a ring written the kernel's way -----------------------------------------------------

_MASK = (1 << 64) - 1
_ID_MASK = (1 << 62) - 1
_FINALIZED, _REUSABLE = 2, 3


class _Bytes:
    def __init__(self, data: bytearray) -> None:
        self.data = data

    def read_at(self, offset: int, n: int) -> bytes:
        return bytes(self.data[offset:offset + n])


class RingWriter:
    """printk_ringbuffer.c's writer, cut down: reserve, commit-and-finalize, push the tails."""

    BASE = 0xFFFF888000100000

    def __init__(self, info: VmcoreInfo, count_bits: int, size_bits: int, first_id: int) -> None:
        self.o, self.s = info.offsets, info.sizes
        self.count, self.size, self.size_bits = 1 << count_bits, 1 << size_bits, size_bits
        self.mem = bytearray(0x10000)
        self.prb, self.descs, self.infos, self.data = 0x100, 0x1000, 0x3000, 0x8000
        self._put(0, self.BASE + self.prb)    # SYMBOL(prb) points at the ring pointer's home
        dr, tr = self.prb + self.o["printk_ringbuffer.desc_ring"], self.prb + self.o["printk_ringbuffer.text_data_ring"]
        self.dr, self.tr = dr, tr
        struct.pack_into("<I", self.mem, dr + self.o["prb_desc_ring.count_bits"], count_bits)
        struct.pack_into("<I", self.mem, tr + self.o["prb_data_ring.size_bits"], size_bits)
        self._put(dr + self.o["prb_desc_ring.descs"], self.BASE + self.descs)
        self._put(dr + self.o["prb_desc_ring.infos"], self.BASE + self.infos)
        self._put(tr + self.o["prb_data_ring.data"], self.BASE + self.data)
        self.next_id = first_id & _ID_MASK
        self.head_lpos = -self.size & _MASK    # BLK0_LPOS
        self.live: list[tuple[int, int, int, bytes]] = []   # (id, begin, next, text)
        self.seq = 0

    def _put(self, off: int, value: int) -> None:
        struct.pack_into("<Q", self.mem, off, value & _MASK)

    def _wraps(self, lpos: int) -> int:
        return (lpos & _MASK) >> self.size_bits

    def write(self, text: bytes) -> None:
        size = (8 + len(text) + 7) & ~7
        begin = self.head_lpos
        nxt = (begin + size) & _MASK
        if self._wraps(begin) != self._wraps(nxt):   # get_next_lpos: wrapping blocks start at 0
            nxt = ((nxt & ~(self.size - 1)) + size) & _MASK
        while self.live and ((nxt - self.live[0][1]) & _MASK > self.size or len(self.live) >= self.count):
            self._retire()
        ident = self.next_id
        self.next_id = (ident + 1) & _ID_MASK
        at = begin & (self.size - 1)
        self._put(self.data + at, ident)   # blocks are 8-aligned: the id always fits
        if self._wraps(begin) != self._wraps(nxt):
            at = 0
            self._put(self.data, ident)
        self.mem[self.data + at + 8:self.data + at + 8 + len(text)] = text
        self._desc(ident, begin, nxt, _FINALIZED, text)
        self.head_lpos = nxt
        self.live.append((ident, begin, nxt, text))

    def _retire(self) -> None:
        ident, begin, nxt, text = self.live.pop(0)
        self._desc(ident, begin, nxt, _REUSABLE, text, info=False)

    def _desc(self, ident: int, begin: int, nxt: int, state: int, text: bytes, info: bool = True) -> None:
        slot = ident % self.count
        d = self.descs + slot * self.s["prb_desc"]
        self._put(d + self.o["prb_desc.state_var"], state << 62 | ident)
        lpos = d + self.o["prb_desc.text_blk_lpos"]
        self._put(lpos + self.o["prb_data_blk_lpos.begin"], begin)
        self._put(lpos + self.o["prb_data_blk_lpos.next"], nxt)
        if info:
            i = self.infos + slot * self.s["printk_info"]
            self._put(i + self.o["printk_info.seq"], self.seq)
            self._put(i + self.o["printk_info.ts_nsec"], 1000 * self.seq)
            struct.pack_into("<HBB", self.mem, i + self.o["printk_info.text_len"], len(text), 0, 6 << 5)
            self.seq += 1

    def space(self) -> SegmentedSpace:
        head = self.live[-1][0] if self.live else (self.next_id - 1) & _ID_MASK
        tail = self.live[0][0] if self.live else head
        self._put(self.dr + self.o["prb_desc_ring.head_id"], head)
        self._put(self.dr + self.o["prb_desc_ring.tail_id"], tail)
        return SegmentedSpace([Segment(self.BASE, len(self.mem), _Bytes(self.mem))])

    def vmcoreinfo(self) -> VmcoreInfo:
        text = need_fixture(KASLR / "vmcoreinfo.txt").read_text()
        text = re.sub(r"SYMBOL\(prb\)=\w+", f"SYMBOL(prb)={self.BASE:x}", text)
        return VmcoreInfo.parse(text)


def _writer(count_bits: int = 3, size_bits: int = 8, first_id: int = -20) -> RingWriter:
    info = VmcoreInfo.parse(need_fixture(KASLR / "vmcoreinfo.txt").read_text())
    return RingWriter(info, count_bits, size_bits, first_id)


def test_a_ring_that_wrapped_many_times_gives_the_newest_records_in_order() -> None:
    w = _writer()
    texts = [f"message {i} ".encode() + b"x" * (i * 7 % 40) for i in range(200)]
    wrapped_blocks = 0
    for t in texts:
        before = w.head_lpos
        w.write(t)
        wrapped_blocks += w._wraps(before) != w._wraps(w.head_lpos) and w.head_lpos & 0xFF != 0
    assert wrapped_blocks > 3, "the test must cover blocks stored at offset 0"
    records = read_log(w.space(), w.vmcoreinfo())
    assert [r.text for r in records] == [text for *_, text in w.live]
    assert [r.text for r in records] == texts[-len(records):]
    assert len(records) >= 3 and all(r.level == 6 for r in records)


def test_ids_crossing_the_62_bit_wrap() -> None:
    w = _writer(first_id=_ID_MASK - 3)
    for i in range(12):
        w.write(b"rec %d" % i)
    assert [r.text for r in read_log(w.space(), w.vmcoreinfo())] == [t for *_, t in w.live]


def test_a_wild_tail_reads_one_ring_at_most() -> None:
    w = _writer()
    for i in range(30):
        w.write(b"line %d" % i)
    space = w.space()
    head = w.live[-1][0]
    w._put(w.dr + w.o["prb_desc_ring.tail_id"], head + 100)     # head - tail is now ~2**62
    records = read_log(space, w.vmcoreinfo())
    assert [r.text for r in records] == [t for *_, t in w.live]


def test_a_descriptor_naming_another_block_is_skipped() -> None:
    w = _writer()
    for i in range(5):
        w.write(b"line %d" % i)
    space = w.space()
    ident, begin, *_ = w.live[2]
    w._put(w.data + (begin & (w.size - 1)), ident + 99)   # the block's id no longer matches
    texts = [r.text for r in read_log(space, w.vmcoreinfo())]
    assert texts == [b"line 0", b"line 1", b"line 3", b"line 4"]


def test_impossible_ring_sizes_and_missing_ring_are_one_line_errors() -> None:
    w = _writer()
    w.write(b"x")
    space = w.space()
    struct.pack_into("<I", w.mem, w.dr + w.o["prb_desc_ring.count_bits"], 60)
    with pytest.raises(FormatError, match="impossible sizes"):
        read_log(space, w.vmcoreinfo())
    info = w.vmcoreinfo()
    del info.symbols["prb"]
    with pytest.raises(SymbolError, match="SYMBOL\\(prb\\)"):
        read_log(space, info)
    info = w.vmcoreinfo()
    info.symbols["prb"] = 0xDEAD0000
    with pytest.raises(FaultError, match="printk ring buffer unreadable"):
        read_log(space, info)


def test_log_format_of_a_multiline_record() -> None:
    rec = LogRecord(seq=0, ts_nsec=5_377_557_123, level=3, facility=0, flags=0, caller_id=7,
                    text=b"first\nsecond\x01\n")
    assert crash_lines(rec) == ["[    5.377557] first", "               second.", "               "]
    assert crash_lines(rec, level=True)[0] == "[    5.377557] <3>first"
    assert text_lines(rec) == ["first", "second.", ""]


# -- the dcmds, through the opened target ---------------------------------------------------

def _run(path: Path, line: str) -> list[str]:
    from pmdb.config import Config
    from pmdb.opener import open_target
    from pmdb.session import Session

    target = open_target(str(need_fixture(path)), config=Config())
    out = io.StringIO()
    try:
        assert Session(target, config=Config(), stdout=out, stderr=out).run_line(line)
    finally:
        target.close()
    return out.getvalue().splitlines()


@pytest.mark.parametrize("path", DUMPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_log_dcmd_is_crashs_log(path: Path) -> None:
    assert _run(path, "::log") == crash_section(_folder(path), "log")


def test_msgbuf_dcmd_and_options() -> None:
    path = KASLR / "dump.202611221942"
    theirs = crash_section(KASLR, "log")
    stamp = re.compile(r"^\[\s*\d+\.\d{6}\] |^ {15}")
    assert _run(path, "::msgbuf") == [stamp.sub("", line, count=1) for line in theirs]
    assert _run(path, "log") == theirs          # crash's spelling
    verbose = _run(path, "::msgbuf -v")
    panic = next(line for line in verbose if "Kernel panic - not syncing" in line)
    assert panic.split()[:4] == ["[", "5.113827]", "kern.emerg", "T102"]
    levels = _run(path, "::log -m")
    assert levels[-1] == theirs[-1].replace("] ", "] <0>", 1)
    no_time = _run(path, "::log -t")
    assert no_time[0] == theirs[0].split("] ", 1)[1]
    dev = _run(path, "::log -d")
    i = dev.index(next(line for line in dev if "acpi PNP0A08:00: _OSC: OS supports" in line))
    assert dev[i + 1:i + 3] == [" " * 15 + "SUBSYSTEM=acpi", " " * 15 + "DEVICE=+acpi:PNP0A08:00"]


def test_a_ring_of_records_that_are_not_there_is_given_up_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged count_bits and descriptor table (a fuzz finding: 131,072 unreadable records
    tried one by one, 5 s for each of ::msgbuf, log and ::status): after a few thousand
    missing records in a row the walk stops, and the records before them are kept."""
    from pmdb.os.linux.printk import ring

    w = _writer(count_bits=3)
    for i in range(6):
        w.write(b"line %d" % i)
    space = w.space()
    struct.pack_into("<I", w.mem, w.dr + w.o["prb_desc_ring.count_bits"], 20)
    w._put(w.dr + w.o["prb_desc_ring.tail_id"], w.live[-1][0] - (1 << 20) + 1)
    tried: list[int] = []
    real = ring.PrintkRing.record
    monkeypatch.setattr(ring.PrintkRing, "record", lambda self, ident: tried.append(ident) or real(self, ident))
    assert read_log(space, w.vmcoreinfo()) == []
    assert ring._MAX_MISSING_RUN < len(tried) <= ring._MAX_MISSING_RUN + 1
