"""The SPARC V9 interpreter against the sparc64 user cores (expected.json is the oracle:
values the program computed natively under qemu) and against hand-computed results of
small instruction sequences (the V9 manual's rules; encodings cross-checked with capstone)."""

from __future__ import annotations

import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import capstone
import pytest

from pmdb.config import Config
from pmdb.emulate.engine import Stop, TraceEvent
from pmdb.emulate.pager import DemandPager, Patch
from pmdb.emulate.sparc64 import SparcV9
from pmdb.errors import CommandError
from pmdb.opener import open_target
from pmdb.symbols.table import Symbol
from pmdb.target import Target

CORES = ("hashcrash-sparc64-O2.core", "hashcrash-sparc64-O0.core")
M64 = (1 << 64) - 1
BIAS = 2047
TUNABLE = 0x9E3779B97F4A7C15       # hashcrash.c
SHIFT = 58


@cache
def _target(path: str) -> Target:
    return open_target(path, config=Config())


@cache
def _expected(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _num(v: int | str) -> int:
    return int(v, 0) if isinstance(v, str) else v


class Call:
    """One core opened, and how to call its functions (fixture README: SPARC conventions)."""

    def __init__(self, user_cores: Path, core: str) -> None:
        self.target = _target(str(user_cores / core))
        self.exp = _expected(str(user_cores / "expected.json"))[core]
        crash = self.exp["crash_registers"]
        self.frame = (_num(crash["o6"]) + BIAS - 4096) & ~0xF   # a few KB below the crash %sp
        self.g7 = _num(crash["g7"])

    def symbol(self, name: str) -> Symbol:
        sym = self.target.symbols.lookup(name)
        assert sym is not None, name
        return sym

    def addr(self, name: str) -> int:
        return self.symbol(name).addr

    def engine(self, patches: tuple[Patch, ...] = ()) -> SparcV9:
        pager = DemandPager(self.target.memory, 8192, patches, "big")
        return SparcV9(self.target.arch, pager, self.target.symbols.describe)

    def setup(self, e: SparcV9, func: str, args: list[int]) -> None:
        for i, a in enumerate(args):
            e.set_reg(f"o{i}", a)
        e.set_reg("o7", e.sentinel - 8)
        e.set_reg("o6", self.frame - 176 - BIAS)
        e.set_reg("g7", self.g7)
        e.set_reg("pc", self.addr(func))

    def run(self, func: str, args: list[int], patches: tuple[Patch, ...] = (),
            budget: int = 10_000_000, **kw: Any) -> tuple[SparcV9, Stop]:
        e = self.engine(patches)
        self.setup(e, func, args)
        return e, e.run(sentinel=e.sentinel, budget=budget, **kw)


@pytest.fixture(params=CORES)
def core(request: pytest.FixtureRequest, user_cores: Path) -> Call:
    return Call(user_cores, request.param)


@pytest.fixture
def o2(user_cores: Path) -> Call:
    return Call(user_cores, CORES[0])


def _patch(c: Call, spec: dict[str, Any]) -> Patch:
    return Patch(c.addr(spec["symbol"]), spec["value"].to_bytes(spec["size"], "big"))


# -- every call in expected.json ----------------------------------------------------------

def test_calls_give_the_natively_computed_results(core: Call) -> None:
    for call in core.exp["calls"]:
        args = [_num(a) for a in call["args"]]
        e, stop = core.run(call["function"], args)
        assert stop.reason == "return", (call, stop)
        assert stop.pc == e.sentinel
        assert e.reg("o0") == _num(call["result"]), call


def test_patched_calls_see_the_patch_and_leave_the_dump_alone(core: Call) -> None:
    tunable = core.addr("tunable")
    for call in core.exp["patched_calls"]:
        e, stop = core.run(call["function"], [_num(a) for a in call["args"]],
                           (_patch(core, call["patch"]),))
        assert stop.reason == "return"
        assert e.reg("o0") == _num(call["result"]), call
        assert e.pager.read(tunable, 8) == (1).to_bytes(8, "big")
    assert core.target.memory.read(tunable, 8) == TUNABLE.to_bytes(8, "big")


# -- register windows -----------------------------------------------------------------------

def test_deep_rec_spills_to_each_frame_and_fills_back(core: Call) -> None:
    e = core.engine()
    core.setup(e, "deep_rec", [20])
    marks = {f"l{i}": 0x1100 + i for i in range(8)} | {"i0": 0x2200, "i5": 0x2255}
    for name, value in marks.items():       # the caller's window: must survive the spills
        e.set_reg(name, value)
    sp0 = e.reg("o6")
    stop = e.run(sentinel=e.sentinel, budget=100_000)
    assert stop.reason == "return" and e.reg("o0") == 110760321586055
    # 21 activations, 8 windows of which 6 can be saved into without a trap: 15 spills,
    # each to the 128-byte save area at %sp+2047 of a frame on the chain sp0 - k*frame.
    spills = [(a, d) for a, d in e.pager.writes if len(d) == 128]
    assert len(spills) == 21 - 6
    save = core.target.memory.u32(core.addr("deep_rec"))     # save %sp, -N, %sp
    assert save >> 19 == (2 << 11) | (14 << 6) | 0x3C
    frame = 0x2000 - (save & 0x1FFF)
    areas = {(sp0 - k * frame + BIAS) & M64 for k in range(21)}
    assert all(a in areas for a, _ in spills)
    first_addr, first_data = spills[0]
    assert first_addr == sp0 + BIAS               # the oldest window is ours
    saved = [int.from_bytes(first_data[i:i + 8], "big") for i in range(0, 128, 8)]
    assert saved[:8] == [0x1100 + i for i in range(8)] and saved[8] == 0x2200
    for name, value in marks.items():             # filled back on the way out
        assert e.reg(name) == value
    assert e.reg("o6") == sp0
    assert e.windows.fills == [a for a, _ in reversed(spills)]
    assert e.reg("canrestore") == 0 and e.reg("cansave") == 6


def test_a_stopped_cpu_has_its_callers_windows_on_the_stack(core: Call) -> None:
    """As the kernel flushes a stopped process's windows, so an unwinder can walk %i6/%i7."""
    entry = core.addr("deep_rec")
    size = core.symbol("deep_rec").size
    code = core.target.memory.read(entry, size)
    call_site = next(entry + i for i in range(0, size, 4) if code[i] >> 6 == 1)   # op = 1
    e = core.engine()
    core.setup(e, "deep_rec", [3])
    for _ in range(3):      # the 4th activation's entry: three windows below the current one
        stop = e.run(sentinel=e.sentinel, budget=10_000, breakpoints=frozenset({entry}))
        assert stop.reason == "breakpoint"
    mem = e.pager

    def saved(sp: int, reg: int) -> int:           # l0-l7 then i0-i7 at %sp+2047
        return mem.u64(sp + BIAS + 8 * reg)

    fp = e.reg("i6")                                # the caller's %sp
    assert e.reg("o7") == call_site and e.reg("i7") == call_site
    assert saved(fp, 15) == call_site               # caller's %i7: called from deep_rec too
    assert saved(saved(fp, 14), 15) == e.sentinel - 8
    stop = e.run(sentinel=e.sentinel, budget=10_000)
    assert stop.reason == "return" and e.reg("o0") == (((TUNABLE & 0xFFFF) * 3 + 1) * 3 + 2) * 3 + 3


def test_flushw_spills_every_valid_window(o2: Call) -> None:
    e, base = _scratch(o2, [
        _f3(2, 14, 0x3C, 14, imm=-176),          # save %sp, -176, %sp
        _f3(2, 14, 0x3C, 14, imm=-176),          # save %sp, -176, %sp
        _f3(2, 0, 0x2B, 0),                      # flushw
        _f3(2, 0, 0x3D, 0, rs2=0),               # restore
        _f3(2, 0, 0x3D, 0, rs2=0),               # restore
        *_RETL,
    ])
    sp0 = e.reg("o6")
    stop = e.run(sentinel=e.sentinel, budget=100)
    assert stop.reason == "return"
    assert e.windows.spills == [sp0 + BIAS, sp0 - 176 + BIAS]   # oldest first
    assert e.windows.fills == [sp0 - 176 + BIAS, sp0 + BIAS]


# -- the trace ---------------------------------------------------------------------------

def test_lookup_trace_has_one_event_per_instruction_with_its_writes(o2: Call) -> None:
    events: list[TraceEvent] = []
    table, key = 0x330F70, 864
    e, stop = o2.run("lookup", [table, 64, key], trace=events.append)
    assert stop.reason == "return" and e.reg("o0") == 0x3320E0
    assert len(events) == stop.instructions
    mem = o2.target.memory
    for ev in events:
        assert ev.insn == mem.read(ev.pc, 4)
    h = (key * TUNABLE) & M64
    bucket = (h >> SHIFT) % 64
    first = [ev.writes for ev in events[:11]]
    assert first == [
        {"g2": 0x300000}, {"g2": SHIFT}, {"g1": 0x300000}, {"g1": TUNABLE},    # sethi/ld/ldx
        {"g1": h}, {"g1": h >> SHIFT}, {"g2": (h >> SHIFT) // 64},              # mulx srlx udivx
        {"o1": (h >> SHIFT) // 64 * 64}, {"g1": bucket}, {"g1": bucket * 8},   # mulx sub sllx
        {"o0": mem.u64(table + 8 * bucket)},                                   # ldx table[b]
    ]
    cmps = [ev for ev in events if ev.insn == bytes.fromhex("80a0400a")]      # cmp %g1, %o2
    assert cmps and all(set(ev.writes) == {"ccr"} for ev in cmps)
    assert cmps[-1].writes["ccr"] & 0x40                                       # xcc.Z: found
    assert events[-1].pc == o2.addr("lookup") + 0x58                           # retl's delay slot
    pcs = [ev.pc for ev in events]
    assert pcs[0] == o2.addr("lookup") and all(p % 4 == 0 for p in pcs)


def test_annulled_delay_slots_are_not_traced(o2: Call) -> None:
    e, base = _scratch(o2, [
        _bicc(8, 3),                             # ba,a +3 (annuls the next)
        _f3(2, 8, 0x02, 0, imm=1),               # mov 1, %o0       (annulled)
        _f3(2, 8, 0x02, 0, imm=2),               # mov 2, %o0       (skipped over)
        _f3(2, 9, 0x02, 0, imm=3),               # mov 3, %o1       (the target)
        *_RETL,
    ])
    events: list[TraceEvent] = []
    stop = e.run(sentinel=e.sentinel, budget=100, trace=events.append)
    assert stop.reason == "return" and stop.instructions == 4
    assert [ev.pc - base for ev in events] == [0, 12, 16, 20]
    assert e.reg("o0") == 0 and e.reg("o1") == 3


# -- stops -----------------------------------------------------------------------------------

def test_unimplemented_instruction_stops_with_a_clear_detail(o2: Call) -> None:
    faddd = (2 << 30) | (4 << 25) | (0x34 << 19) | (0 << 14) | (0x42 << 5) | 2
    at = o2.addr("lookup") + 8
    e, stop = o2.run("lookup", [0x330F70, 64, 864], (Patch(at, faddd.to_bytes(4, "big")),))
    assert stop.reason == "unimplemented" and stop.pc == at and stop.instructions == 2
    assert f"{faddd:#010x}" in stop.detail and "op3=0x34" in stop.detail
    assert stop.detail.endswith("at lookup+0x8")
    assert "\n" not in stop.detail


def test_jump_into_an_unmapped_page_is_a_fault(o2: Call) -> None:
    e = o2.engine()
    o2.setup(e, "lookup", [0x330F70, 64, 864])
    e.set_reg("o7", 0x40 - 8)                   # return into page 0
    stop = e.run(sentinel=e.sentinel, budget=1000)
    assert stop.reason == "fault" and stop.pc == 0x40
    assert "fetch from unmapped page 0x0" in stop.detail
    assert e.reg("o0") == 0x3320E0              # the function itself ran


def test_budget_stops_and_the_run_resumes(o2: Call) -> None:
    e, stop = o2.run("bench", [0x330F70, 64, 1000], budget=1000)
    assert stop.reason == "budget" and stop.instructions == 1000
    total = stop.instructions
    while stop.reason == "budget":
        stop = e.run(sentinel=e.sentinel, budget=5000)
        total += stop.instructions
    assert stop.reason == "return" and e.reg("o0") == 332834500
    _, whole = o2.run("bench", [0x330F70, 64, 1000])
    assert total == whole.instructions


def test_breakpoint_stops_before_and_continues_from_it(o2: Call) -> None:
    bp = o2.addr("lookup") + 0x28               # ldx [%o0+%g1], %o0
    e, stop = o2.run("lookup", [0x330F70, 64, 864], breakpoints=frozenset({bp}))
    assert stop == Stop("breakpoint", bp, 10)
    assert e.reg("pc") == bp and e.reg("npc") == bp + 4
    stop = e.run(sentinel=e.sentinel, budget=1000, breakpoints=frozenset({bp}))
    assert stop.reason == "return" and e.reg("o0") == 0x3320E0


def test_step_executes_exactly_one_instruction(o2: Call) -> None:
    e = o2.engine()
    o2.setup(e, "lookup", [0x330F70, 64, 864])
    start = e.reg("pc")
    assert e.step() == Stop("step", start + 4, 1)
    assert e.reg("g2") == 0x300000


def test_registers_and_bad_names(o2: Call) -> None:
    e = o2.engine()
    e.set_reg("%sp", 0x1234)
    assert e.reg("o6") == 0x1234 and e.reg("sp") == 0x1234
    e.set_reg("g0", 5)
    assert e.reg("g0") == 0
    with pytest.raises(CommandError, match="unknown register %xyz"):
        e.set_reg("xyz", 1)
    with pytest.raises(CommandError, match="unknown register"):
        e.reg("f0")
    regs = e.registers()
    assert {"pc", "npc", "y", "ccr", "cwp", "i7"} <= set(regs)
    with pytest.raises(CommandError):
        e.run(sentinel=None, budget=0)


def test_rewritten_code_is_decoded_again(o2: Call) -> None:
    e, stop = o2.run("lookup", [0x330F70, 64, 864])
    assert e.reg("o0") == 0x3320E0
    at = o2.addr("lookup")
    e.pager.poke(at, b"".join(w.to_bytes(4, "big") for w in _RETL[:1] + [_f3(2, 8, 0x02, 0, imm=7)]))
    o2.setup(e, "lookup", [0x330F70, 64, 864])
    stop = e.run(sentinel=e.sentinel, budget=100)
    assert stop.reason == "return" and e.reg("o0") == 7 and stop.instructions == 2


# -- small sequences, hand-computed ------------------------------------------------------

def _f3(op: int, rd: int, op3: int, rs1: int, imm: int | None = None, rs2: int = 0) -> int:
    w = (op << 30) | (rd << 25) | (op3 << 19) | (rs1 << 14)
    return w | (0x2000 | (imm & 0x1FFF) if imm is not None else rs2)


def _bicc(cond: int, disp_words: int, annul: bool = True) -> int:
    return (int(annul) << 29) | (cond << 25) | (2 << 22) | (disp_words & 0x3FFFFF)


_RETL = [_f3(2, 0, 0x38, 15, imm=8), 0x01000000]      # jmpl %o7+8, %g0; nop


def _scratch(c: Call, words: list[int]) -> tuple[SparcV9, int]:
    """An engine with ``words`` as code in a page the dump does not have."""
    e = c.engine()
    base = 0x7000_0000
    assert not c.target.memory.readable(base, 1)
    e.pager.allocate(base, 8192)
    e.pager.poke(base, b"".join(w.to_bytes(4, "big") for w in words))
    e.set_reg("o7", e.sentinel - 8)
    e.set_reg("o6", c.frame - 176 - BIAS)
    e.set_reg("pc", base)
    return e, base


def _disasm(words: list[int]) -> list[str]:
    """capstone's reading of each word ("?" where capstone has no V9 decoding for it)."""
    md = capstone.Cs(capstone.CS_ARCH_SPARC, capstone.CS_MODE_BIG_ENDIAN | capstone.CS_MODE_V9)
    out = []
    for w in words:
        insns = list(md.disasm(w.to_bytes(4, "big"), 0))
        out.append(f"{insns[0].mnemonic} {insns[0].op_str}".strip() if insns else "?")
    return out


def _same_as_capstone(code: list[int], expected: list[str | None]) -> None:
    """The hand encodings mean what the test says (None: capstone 5 has no V9 reading of
    rd %y/%ccr, ldd/std or the alternate-space loads)."""
    for got, want in zip(_disasm(code), expected, strict=False):
        if want is not None:
            assert got == want


O0, O1, O2, O3, O4, O5, G1 = 8, 9, 10, 11, 12, 13, 1


def test_condition_codes_and_conditional_moves(o2: Call) -> None:
    code = [
        _f3(2, O2, 0x10, O0, rs2=O1),                        # addcc %o0, %o1, %o2
        (2 << 30) | (O3 << 25) | (0x28 << 19) | (2 << 14),   # rd %ccr, %o3
        _f3(2, 0, 0x14, O1, rs2=O2),                         # subcc %o1, %o2, %g0 (cmp)
        _f3(2, O4, 0x2C, 0, imm=0) | (1 << 18) | (3 << 14) | (2 << 11) | 1,  # movl %xcc, 1, %o4
        _f3(2, O5, 0x2C, 0, imm=0) | (1 << 18) | (5 << 14) | (2 << 11) | 1,  # movcs %xcc, 1, %o5
        *_RETL,
    ]
    _same_as_capstone(code, ["addcc %o0, %o1, %o2", None, "cmp %o1, %o2",
                             "movl %xcc, 1, %o4", "movcs %xcc, 1, %o5"])
    e, _ = _scratch(o2, code)
    e.set_reg("o0", 0x7FFFFFFFFFFFFFFF)
    e.set_reg("o1", 1)
    assert e.run(sentinel=e.sentinel, budget=50).reason == "return"
    assert e.reg("o2") == 1 << 63
    # xcc: N=1 V=1 (signed overflow); icc: 0xffffffff + 1 = 0: Z=1 C=1
    assert e.reg("o3") == 0xA5
    # 1 vs 0x8000...: signed greater (movl not taken), unsigned less (movcs taken)
    assert e.reg("o4") == 0 and e.reg("o5") == 1


def test_annulled_conditional_branch_skips_its_slot_only_when_untaken(o2: Call) -> None:
    code = [
        _f3(2, 0, 0x14, O0, imm=0),              # cmp %o0, 0
        _bicc(9, 3),                             # bne,a +3
        _f3(2, O1, 0x02, 0, imm=5),              # mov 5, %o1   (runs only when taken)
        _f3(2, O2, 0x02, 0, imm=6),              # mov 6, %o2   (skipped when taken)
        *_RETL,
    ]
    assert _disasm(code)[1].startswith("bne,a")
    for o0, o1, o2_ in ((1, 5, 0), (0, 0, 6)):
        e, _ = _scratch(o2, code)
        e.set_reg("o0", o0)
        assert e.run(sentinel=e.sentinel, budget=50).reason == "return"
        assert (e.reg("o1"), e.reg("o2")) == (o1, o2_)


def test_multiply_divide_and_y(o2: Call) -> None:
    code = [
        _f3(2, O2, 0x0A, O0, rs2=O0),            # umul %o0, %o0, %o2
        (2 << 30) | (O3 << 25) | (0x28 << 19),   # rd %y, %o3
        _f3(2, 0, 0x30, 0, imm=1),               # wr %g0, 1, %y
        _f3(2, O4, 0x0E, 0, imm=2),              # udiv %g0, 2, %o4: (1 << 32) / 2
        _f3(2, O5, 0x2D, O1, imm=2),             # sdivx %o1, 2, %o5
        _f3(2, G1, 0x2E, 0, rs2=O0),             # popc %o0, %g1
        *_RETL,
    ]
    _same_as_capstone(code, ["umul %o0, %o0, %o2", None, "wr %g0, 1, %y",
                             "udiv %g0, 2, %o4", "sdivx %o1, 2, %o5", "popc %o0, %g1"])
    e, _ = _scratch(o2, code)
    e.set_reg("o0", 0xFFFFFFFF)
    e.set_reg("o1", -7 & M64)
    assert e.run(sentinel=e.sentinel, budget=50).reason == "return"
    assert e.reg("o2") == 0xFFFFFFFE00000001 and e.reg("o3") == 0xFFFFFFFE
    assert e.reg("o4") == 0x80000000
    assert e.reg("o5") == -3 & M64               # rounds toward zero
    assert e.reg("g1") == 32


def test_shifts_and_sign_extending_loads(o2: Call) -> None:
    code = [
        _f3(2, O1, 0x27, O0, imm=4),             # sra %o0, 4, %o1
        _f3(2, O2, 0x26, O0, imm=4),             # srl %o0, 4, %o2
        _f3(2, O3, 0x27, O0, imm=4) | 0x1000,    # srax %o0, 4, %o3
        _f3(3, O0, 0x0E, 14, imm=BIAS),          # stx %o0, [%sp+2047]
        _f3(3, O4, 0x09, 14, imm=BIAS + 4),      # ldsb [%sp+2051], %o4
        _f3(3, O5, 0x01, 14, imm=BIAS + 4),      # ldub [%sp+2051], %o5
        _f3(3, G1, 0x08, 14, imm=BIAS + 4),      # ldsw [%sp+2051], %g1
        *_RETL,
    ]
    _same_as_capstone(code, ["sra %o0, 4, %o1", "srl %o0, 4, %o2", "srax %o0, 4, %o3",
                             "stx %o0, [%sp+0x7ff]", "ldsb [%sp+0x803], %o4",
                             "ldub [%sp+0x803], %o5", "ldsw [%sp+0x803], %g1"])
    e, _ = _scratch(o2, code)
    e.set_reg("o0", 0xF000000080000000)
    assert e.run(sentinel=e.sentinel, budget=50).reason == "return"
    assert e.reg("o1") == 0xFFFFFFFFF8000000     # sign of bit 31
    assert e.reg("o2") == 0x08000000             # low 32 bits only
    assert e.reg("o3") == 0xFF00000008000000     # sign of bit 63
    assert e.reg("o4") == 0xFFFFFFFFFFFFFF80 and e.reg("o5") == 0x80
    assert e.reg("g1") == 0xFFFFFFFF80000000
    sp = e.reg("o6") + BIAS
    assert e.pager.writes == [(sp, (0xF000000080000000).to_bytes(8, "big"))]


def test_movr_pairs_alternate_space_and_a_software_trap(o2: Call) -> None:
    ta = (2 << 30) | (8 << 25) | (0x3A << 19) | 0x2000 | 0x6D
    code = [
        _f3(2, O1, 0x2F, O0, imm=0) | (5 << 10) | 9,     # movrnz %o0, 9, %o1
        _f3(3, O2, 0x07, 14, imm=BIAS),                  # std %o2, [%sp+2047]
        _f3(3, O4, 0x03, 14, imm=BIAS),                  # ldd [%sp+2047], %o4
        _f3(2, 2, 0x00, 14, imm=BIAS),                   # add %sp, 2047, %g2
        _f3(3, G1, 0x10, 2, rs2=0) | (0x88 << 5),        # lduwa [%g2] ASI_PL, %g1
        _f3(2, 0, 0x30, 0, imm=1),                       # wr %g0, 1, %y
        _f3(2, 3, 0x0F, 0, imm=1),                       # sdiv %g0, 1, %g3: 2^32 / 1
        ta,                                              # ta 0x6d (a system call)
        *_RETL,
    ]
    _same_as_capstone(code, ["movrnz %o0, 9, %o1", None, None, "add %sp, 0x7ff, %g2", None,
                             "wr %g0, 1, %y", "sdiv %g0, 1, %g3", "ta %icc, %g0 + 0x6d"])
    e, base = _scratch(o2, code)
    e.set_reg("o0", 1)
    e.set_reg("o2", 0x1111222233334444)
    e.set_reg("o3", 0x5555666677778888)
    stop = e.run(sentinel=e.sentinel, budget=50)
    assert stop.reason == "fault" and stop.pc == base + 28 and stop.instructions == 7
    assert "software trap 0x6d" in stop.detail
    assert e.reg("o1") == 9
    assert (e.reg("o4"), e.reg("o5")) == (0x33334444, 0x77778888)    # std keeps low words
    assert e.reg("g1") == 0x44443333                                  # little-endian ASI
    assert e.reg("g3") == 0x7FFFFFFF                                  # overflow clamps


def test_misaligned_load_is_a_fault(o2: Call) -> None:
    e, base = _scratch(o2, [_f3(3, O1, 0x0B, 14, imm=BIAS + 4), *_RETL])   # ldx [%sp+2051]
    stop = e.run(sentinel=e.sentinel, budget=50)
    assert stop.reason == "fault" and stop.pc == base and "misaligned" in stop.detail


def test_casx_and_ldstub(o2: Call) -> None:
    code = [
        _f3(2, O3, 0x00, 14, imm=BIAS),                       # add %sp, 2047, %o3
        _f3(3, O0, 0x0E, O3, rs2=0),                          # stx %o0, [%o3]
        _f3(3, O1, 0x3E, O3, rs2=O0) | (0x80 << 5),           # casx [%o3], %o0, %o1
        _f3(3, O2, 0x0D, O3, rs2=0),                          # ldstub [%o3], %o2
        _f3(3, O4, 0x0B, O3, rs2=0),                          # ldx [%o3], %o4
        *_RETL,
    ]
    assert _disasm(code)[2].startswith("casx")
    e, _ = _scratch(o2, code)
    e.set_reg("o0", 0x1122)
    e.set_reg("o1", 0x3344)
    assert e.run(sentinel=e.sentinel, budget=50).reason == "return"
    assert e.reg("o1") == 0x1122                 # the old value; memory now 0x3344
    assert e.reg("o2") == 0                      # top byte of 0x3344 (big-endian)
    assert e.reg("o4") == 0xFF00000000003344


# -- speed -------------------------------------------------------------------------------

def test_bench_runs_at_a_million_instructions_a_second(user_cores: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """CPU time, not wall time: other jobs on a shared machine must not fail this."""
    for name in CORES:
        c = Call(user_cores, name)
        best = 0.0
        for _ in range(5):
            e = c.engine()
            c.setup(e, "bench", [0x330F70, 64, 1000])
            t0 = time.process_time()
            stop = e.run(sentinel=e.sentinel, budget=10_000_000)
            rate = stop.instructions / max(time.process_time() - t0, 1e-9)
            assert stop.reason == "return" and e.reg("o0") == 332834500
            best = max(best, rate)
        with capsys.disabled():
            print(f"\nSPARC64 {name}: bench(table, 64, 1000) {stop.instructions} instructions, "
                  f"{best / 1e6:.2f} M instructions/s untraced (CPU time)")
        assert best >= 1_000_000
