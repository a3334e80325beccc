"""The pager and the unicorn engines directly: paging, patches, copy-on-write, stops, tracing.

Results are checked against expected.json (what the crashed programs computed)
and against the dump's own bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.emulate.engine import TraceEvent
from pmdb.emulate.pager import DemandPager, Patch
from pmdb.emulate.unicorn_x86 import UnicornX86
from pmdb.errors import CommandError, FaultError
from pmdb.opener import open_target
from pmdb.target import Target

CORE = "hashcrash-x86_64-O2.core"


@pytest.fixture(scope="module")
def target(user_cores: Path) -> Target:
    return open_target(str(user_cores / CORE), config=Config())


@pytest.fixture(scope="module")
def expected(user_cores: Path) -> dict:
    return json.loads((user_cores / "expected.json").read_text())[CORE]


def _engine(target: Target, patches: tuple[Patch, ...] = ()) -> UnicornX86:
    pager = DemandPager(target.memory, 4096, patches)
    engine = UnicornX86(target.arch, pager)
    for name, value in target.current_thread.registers.items():
        engine.set_reg(name, value)
    return engine


def _call(target: Target, engine: UnicornX86, func: str, args: list[int], **kw: object):
    sp = (target.current_thread.registers["rsp"] - 0x2000) & ~0xF
    engine.pager.poke(sp - 8, engine.sentinel.to_bytes(8, "little"))
    engine.set_reg("rsp", sp - 8)
    for reg, value in zip(target.arch.args, args, strict=False):
        engine.set_reg(reg, value)
    engine.set_reg("rip", target.symbols.lookup(func, None).addr)
    return engine.run(sentinel=engine.sentinel, budget=10**7, **kw)  # type: ignore[arg-type]


def _args(call: dict) -> list[int]:
    return [int(a, 0) if isinstance(a, str) else a for a in call["args"]]


def _result(call: dict) -> int:
    r = call["result"]
    return int(r, 0) if isinstance(r, str) else r


def test_every_call_returns_the_programs_result(target: Target, expected: dict) -> None:
    engine = _engine(target)
    for call in expected["calls"]:
        stop = _call(target, engine, call["function"], _args(call))
        assert stop.reason == "return" and stop.pc == engine.sentinel
        assert engine.reg("rax") == _result(call), call


def test_pager_copies_on_write_and_patches(target: Target, expected: dict) -> None:
    tunable = int(expected["symbols"]["tunable"], 16)
    original = target.memory.read(tunable, 8)
    engine = _engine(target, (Patch(tunable, (1).to_bytes(8, "little")),))
    for call in expected["patched_calls"]:
        _call(target, engine, call["function"], _args(call))
        assert engine.reg("rax") == _result(call)
    pager = engine.pager
    assert pager.read(tunable, 8) == (1).to_bytes(8, "little")
    assert target.memory.read(tunable, 8) == original          # the dump is untouched
    assert tunable & ~0xFFF in pager.paged_in
    # every paged-in page is the dump's page (but for the patch and the pushed sentinel)
    stack = engine.reg("rsp") & ~0xFFF
    for base in pager.paged_in:
        if base not in (tunable & ~0xFFF, stack):
            assert bytes(pager.pages[base]) == target.memory.read(base, 4096)


def test_writes_are_recorded_and_shared_with_unicorn(target: Target, expected: dict) -> None:
    engine = _engine(target)
    engine.record_writes = True
    bench = expected["calls"][-1]
    _call(target, engine, "bench", _args(bench))
    # bench pushes r12, rbp, rbx and calls lookup 1000 times: 1000 return addresses
    assert len(engine.pager.writes) == 1003
    addr, data = engine.pager.writes[-1]
    assert engine.pager.read(addr, 8) == data
    assert target.symbols.describe(int.from_bytes(data, "little")).startswith("bench+")


def test_trace_events_name_written_registers(target: Target, expected: dict) -> None:
    engine = _engine(target)
    events: list[TraceEvent] = []
    call = expected["calls"][0]
    stop = _call(target, engine, "lookup", _args(call), trace=events.append)
    assert stop.instructions == len(events)
    lookup = int(expected["symbols"]["lookup"], 16)
    tunable = int.from_bytes(target.memory.read(int(expected["symbols"]["tunable"], 16), 8), "little")
    assert events[0].pc == lookup and events[0].writes == {"rax": tunable}
    assert events[-1].insn == b"\xc3" and events[-1].writes.keys() == {"rsp"}
    assert engine.reg("rax") == _result(call)


def test_breakpoints_budget_step_and_faults(target: Target, expected: dict) -> None:
    engine = _engine(target)
    lookup = int(expected["symbols"]["lookup"], 16)
    bench = expected["calls"][-1]
    stop = _call(target, engine, "bench", _args(bench), breakpoints=frozenset({lookup}))
    assert stop.reason == "breakpoint" and stop.pc == lookup == engine.reg("rip")
    # a run starting on a breakpoint executes it rather than stopping again
    again = engine.run(sentinel=engine.sentinel, budget=10**7, breakpoints=frozenset({lookup}))
    assert again.reason == "breakpoint" and again.pc == lookup
    one = engine.step()
    assert one.reason == "step" and one.pc == lookup + 7 and one.instructions == 1
    budget = engine.run(sentinel=engine.sentinel, budget=5)
    assert budget.reason == "budget" and budget.instructions == 5
    engine.set_reg("rip", 0x1234)
    fault = engine.run(sentinel=engine.sentinel, budget=10)
    assert fault.reason == "fault" and "fetch from unmapped page 0x1000" in fault.detail


def test_registers_and_thread_pointer(target: Target) -> None:
    engine = _engine(target)
    assert engine.reg("fs_base") == target.current_thread.registers["fs_base"]
    engine.set_reg("%gs_base", 0x1234000)
    assert engine.registers()["gs_base"] == 0x1234000
    with pytest.raises(CommandError, match="unknown register %foo"):
        engine.set_reg("foo", 1)


def test_pager_faults_outside_the_dump(target: Target) -> None:
    pager = DemandPager(target.memory, 4096)
    with pytest.raises(FaultError, match="not in the dump"):
        pager.read(0x1000, 4)
    pager.allocate(0x1000, 16)
    assert pager.read(0x1000, 4) == bytes(4) and pager.allocated == [0x1000]


def test_i386_call_with_64bit_arguments(user_cores: Path) -> None:
    core = "hashcrash-i386-O2.core"
    t = open_target(str(user_cores / core), config=Config())
    call = json.loads((user_cores / "expected.json").read_text())[core]["calls"][0]
    engine = UnicornX86(t.arch, DemandPager(t.memory, 4096))
    sp = (t.current_thread.registers["esp"] - 0x2000) & ~0xF
    table, nbuckets, key = _args(call)
    words = [engine.sentinel, table, nbuckets, 0, key, 0]   # uint64_t: two words, low first
    for i, w in enumerate(words):
        engine.pager.poke(sp + 4 * i, w.to_bytes(4, "little"))
    engine.set_reg("esp", sp)
    engine.set_reg("eip", t.symbols.lookup("lookup", None).addr)
    stop = engine.run(sentinel=engine.sentinel, budget=10**6)
    assert stop.reason == "return" and engine.reg("eax") == _result(call)


def test_a_runaway_loop_stops_on_a_large_budget(target: Target) -> None:
    """Above the exact-count limit the run goes uncounted under a time limit, then counts."""
    from pmdb.emulate.unicorn_x86 import EXACT_BUDGET

    lookup = target.symbols.lookup("lookup", None).addr
    engine = _engine(target, (Patch(lookup, b"\xeb\xfe"),))   # jmp . (a loop forever)
    engine.set_reg("rip", lookup)
    stop = engine.run(sentinel=engine.sentinel, budget=EXACT_BUDGET * 2)
    assert stop.reason == "budget" and stop.pc == lookup
    assert f"more than {EXACT_BUDGET * 2} instructions" in stop.describe()


# exit_group(42) / exit(42): were any of them to reach the host, the test process would end
_SYSCALLS = {
    "syscall": bytes.fromhex("b8e7000000" "bf2a000000" "0f05"),        # mov eax,231; mov edi,42; syscall
    "int 0x80": bytes.fromhex("b801000000" "bb2a000000" "cd80"),       # mov eax,1; mov ebx,42; int 0x80
}


@pytest.mark.parametrize("how", sorted(_SYSCALLS))
def test_system_calls_stop_the_emulation_and_never_reach_the_host(target: Target, how: str) -> None:
    """The emulated code asks the kernel to end the process: the emulation stops at that
    instruction with one clear line, and this process lives on."""
    code = _SYSCALLS[how]
    lookup = target.symbols.lookup("lookup", None).addr
    engine = _engine(target, (Patch(lookup, code),))
    engine.set_reg("rip", lookup)
    stop = engine.run(sentinel=engine.sentinel, budget=100)
    assert stop.reason == "fault" and stop.pc in (lookup + 10, lookup + 12)
    assert stop.describe().startswith(f"fault at {stop.pc:#x}: ") and "system call" in stop.detail
    assert "not emulated" in stop.detail and "\n" not in stop.describe()


def test_i386_int80_stops_the_emulation(user_cores: Path) -> None:
    t = open_target(str(user_cores / "hashcrash-i386-O2.core"), config=Config())
    lookup = t.symbols.lookup("lookup", None).addr
    engine = UnicornX86(t.arch, DemandPager(t.memory, 4096, (Patch(lookup, _SYSCALLS["int 0x80"]),)))
    engine.set_reg("esp", (t.current_thread.registers["esp"] - 0x2000) & ~0xF)
    engine.set_reg("eip", lookup)
    stop = engine.run(sentinel=engine.sentinel, budget=100)
    assert stop.reason == "fault" and stop.detail == "interrupt 128 (int 0x80: a system call, not emulated)"
