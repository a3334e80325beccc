"""crash's bt, bt -a, foreach bt through pmdb's dcmds, text against crash 8.0.6's own output.

The oracle is crash-oracle.txt (crash on vmcore.elf with the -dbg vmlinux); for the
kdump files crash-formats.txt gives the diff of crash's output on that file, which
is applied here, so every dump is compared with what crash printed for it.

Where crash and pmdb agree on the format the whole text of a task is compared,
line for line. The one documented difference (found by the unwinder's tests,
tests/test_kernel_unwind.py): the CPU that the panic stopped (in stop_this_cpu,
on its IRQ stack). crash's trace for it begins with a *stale* return address it
found near the stack pointer: on the ELF dump ``stop_this_cpu`` 8 bytes below
RSP, on the kdump files ``sched_clock_idle_wakeup_event`` / ``update_wall_time``
at RSP, after the CPU's registers. pmdb starts from the CPU's registers (the
``[exception RIP: stop_this_cpu+107]`` block crash prints on the kdump files)
and the ORC walk from there, so that stale frame is the only line allowed to
differ: it must be a single frame, within 16 bytes of the CPU's RSP, before
the first frame pmdb has; the frames after it are renumbered and then compared.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pmdb.target import Target
from tests.conftest import need_fixture
from tests.linux_session import DUMP_IDS, DUMPS, run, target_for
from tests.linux_vmcore import KASLR

_HEAD = re.compile(r'PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)\s+COMMAND: "(.*)"')
_FRAME = re.compile(r"^\s*#(\d+) \[([0-9a-f]+)\] (\S+) at ([0-9a-f]+)")
_RSP = re.compile(r"RSP: ([0-9a-f]+)")


# -- crash's output for one dump file ------------------------------------------------------

def apply_normal_diff(lines: list[str], diff: list[str]) -> list[str]:
    """``diff`` (normal format: ``3c3`` hunks with ``<`` / ``>`` lines) applied to lines."""
    hunks = []
    for i, line in enumerate(diff):
        m = re.fullmatch(r"(\d+)(?:,(\d+))?([acd])(\d+)(?:,(\d+))?", line)
        if m:
            a, b = int(m[1]), int(m[2] or m[1])
            new = []
            for nxt in diff[i + 1:]:
                if re.fullmatch(r"\d+(?:,\d+)?[acd]\d+(?:,\d+)?", nxt):
                    break
                if nxt.startswith("> "):
                    new.append(nxt[2:])
            hunks.append((a, b, m[3], new))
    out = list(lines)
    for a, b, op, new in reversed(hunks):
        if op == "a":
            out[a:a] = new
        else:
            out[a - 1:b] = new
    return out


def crash_output(folder: Path, name: str) -> list[str]:
    """crash-oracle.txt as crash printed it for ``name`` (the oracle ran on vmcore.elf)."""
    lines = need_fixture(folder / "crash-oracle.txt").read_text().splitlines()
    if name.startswith("vmcore.elf"):
        return lines
    text = need_fixture(folder / "crash-formats.txt").read_text()
    marker = f"--- diff of crash output, vmcore.elf vs {name}:"
    assert marker in text, marker
    diff = text.split(marker)[1].split("\n--- ")[0].split("\ndrgn ")[0].splitlines()
    return apply_normal_diff(lines, [d for d in diff if d])


def section(lines: list[str], command: str) -> list[str]:
    starts = [i for i, line in enumerate(lines) if line.startswith("crash> ")] + [len(lines)]
    for a, b in zip(starts, starts[1:], strict=False):
        if lines[a] == f"crash> {command}":
            return lines[a + 1:b]
    raise AssertionError(f"no '{command}' in crash's output")


def by_task(lines: list[str]) -> list[tuple[int, list[str]]]:
    """(task, its lines without the blank separator) in order of appearance."""
    out: list[tuple[int, list[str]]] = []
    for line in lines:
        if m := _HEAD.match(line):
            out.append((int(m[2], 16), [line]))
        elif out and line:
            out[-1][1].append(line)
    return out


def renumber(lines: list[str], drop: set[int]) -> list[str]:
    """The lines without the numbered frames in ``drop``, the rest numbered from #0 again."""
    out, level = [], 0
    for line in lines:
        m = _FRAME.match(line)
        if m and int(m[1]) in drop:
            continue
        if m:
            line = f"{'#' + str(level):>3}" + line[line.index(" ["):]
            level += 1
        out.append(line)
    return out


def compare_task(ours: list[str], theirs: list[str], stopped_cpu: bool) -> None:
    """Equal text; for the stopped CPU, crash's stale leading frame aside (module docstring)."""
    if not stopped_cpu:
        assert ours == theirs
        return
    ours_frames = [m for line in ours if (m := _FRAME.match(line))]
    lead = ours[1:next(i for i, line in enumerate(ours) if _FRAME.match(line))]
    rsp = int(_RSP.search(lead[1])[1], 16)                      # the CPU's registers, first
    first = int(ours_frames[0][2], 16)
    crash_frames = [m for line in theirs if (m := _FRAME.match(line))]
    at = [int(m[2], 16) for m in crash_frames].index(first)
    stale = crash_frames[:at]                                   # what crash has before our first frame
    assert len(stale) == 1 and abs(int(stale[0][2], 16) - rsp) <= 16, stale
    theirs = renumber(theirs, {int(stale[0][1])})
    if theirs[1].startswith("    [exception RIP:"):
        assert ours == theirs                                   # kdump: crash shows the registers too
    else:
        # ELF: crash shows no registers; its stale frame is the function they point into
        assert lead[0] == f"    [exception RIP: {stale[0][3]}+107]"
        assert [ours[0]] + ours[1 + len(lead):] == theirs


# -- pmdb -------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=DUMPS, ids=DUMP_IDS)
def dump(request: pytest.FixtureRequest) -> tuple[Path, str, Target]:
    folder, name = request.param
    return folder, name, target_for(folder, name)


def stopped_task(target: Target) -> int:
    """The task on the CPU the panic stopped: on a CPU, not the panic task."""
    kernel = target.os
    panic = kernel.panic_task().address  # type: ignore[attr-defined]
    (task,) = [c.curr for c in kernel.cpus() if c.curr and c.curr != panic]  # type: ignore[attr-defined]
    return int(task)


def test_foreach_bt_is_crashs(dump: tuple[Path, str, Target]) -> None:
    """Every task, in crash's order, with crash's text (frames, [addr], exception and user
    register blocks, IRQ-stack marker); the stopped CPU as the module docstring says."""
    folder, name, target = dump
    out, err = run(target, "foreach bt")
    assert not err
    ours, theirs = by_task(out.splitlines()), by_task(section(crash_output(folder, name), "foreach bt"))
    assert [t for t, _ in ours] == [t for t, _ in theirs] and len(ours) >= 60
    stopped = stopped_task(target)
    for (task, a), (_, b) in zip(ours, theirs, strict=True):
        compare_task(a, b, task == stopped)
    assert out.endswith("\n") and "\n\n\n" not in out


def test_bt_of_the_panic_task_is_crashs(dump: tuple[Path, str, Target]) -> None:
    """bt at open: the panic task, whole text equal to crash's bt (for the oops fixtures:
    crashdrv_widget_bump+5 as the exception RIP with crash's registers, the module frame,
    the syscall path and the user registers)."""
    folder, name, target = dump
    out, err = run(target, "bt")
    theirs = section(crash_output(folder, name), "bt")
    assert not err and out.splitlines() == theirs
    if "slub" not in folder.name:
        assert "    [exception RIP: crashdrv_widget_bump+5]" in theirs
        assert any(line.endswith("[crashdrv]") and " crashdrv_null_pointer at " in line for line in theirs)


def test_bt_a_shows_both_cpus(dump: tuple[Path, str, Target]) -> None:
    """bt -a: each CPU's task in CPU order, the stopped CPU's IRQ stack left through
    ``--- <IRQ stack> ---`` as crash shows it."""
    folder, name, target = dump
    out, _ = run(target, "bt -a")
    ours, theirs = by_task(out.splitlines()), by_task(section(crash_output(folder, name), "bt -a"))
    assert [t for t, _ in ours] == [t for t, _ in theirs]
    cpus = [int(_HEAD.match(lines[0])[3]) for _, lines in ours]        # type: ignore[index]
    assert cpus == [0, 1]
    stopped = stopped_task(target)
    for (task, a), (_, b) in zip(ours, theirs, strict=True):
        compare_task(a, b, task == stopped)
    irq = dict(ours)[stopped]
    at = irq.index("--- <IRQ stack> ---")
    assert " sysvec_reboot at " in irq[at - 1] and " asm_sysvec_reboot at " in irq[at + 1]


def test_bt_by_pid_and_task(dump: tuple[Path, str, Target]) -> None:
    """bt takes pids (decimal, as crash reads them) and task addresses, several at once."""
    folder, name, target = dump
    theirs = dict(by_task(section(crash_output(folder, name), "foreach bt")))
    out, _ = run(target, "bt 1 2")
    ours = by_task(out.splitlines())
    pids = [int(_HEAD.match(lines[0])[1]) for _, lines in ours]         # type: ignore[index]
    assert pids == [1, 2] and all(lines == theirs[t] for t, lines in ours)
    task = ours[1][0]
    assert run(target, f"bt {task:x}")[0].splitlines() == theirs[task]
    assert run(target, f"{task:x}::bt")[0].splitlines() == theirs[task]


def test_bt_f_words_are_crashs_rd(dump: tuple[Path, str, Target]) -> None:
    """bt -f: each frame's stack words, from the word above the previous frame's [addr]
    up to its own; the words at the exception RSP equal crash's ``rd -64 <RSP> 8``."""
    folder, name, target = dump
    if "slub" in folder.name:
        pytest.skip("the slub fixture's oracle has no rd of an exception frame")
    out, _ = run(target, "bt -f")
    words: dict[int, int] = {}
    prev = None
    for line in out.splitlines():
        if m := _FRAME.match(line):
            addr = int(m[2], 16)
            if prev is not None:
                assert max(words) == addr and min(w for w in words if w > prev) == prev + 8
            prev = addr
        elif m := re.fullmatch(r"    ([0-9a-f]+): ((?:[0-9a-f]{16} ){1,2})", line):
            for i, w in enumerate(m[2].split()):
                words[int(m[1], 16) + 8 * i] = int(w, 16)
    rd = next(s for s in _sections_starting(crash_output(folder, name), "rd -64 "))
    for line in rd:
        addr, *values = line.replace(":", "").split()[:3]          # address, two words, ASCII
        for i, v in enumerate(values):
            if int(addr, 16) + 8 * i in words:
                assert words[int(addr, 16) + 8 * i] == int(v, 16)
    assert sum(1 for line in rd for _ in line.split()[1:3]) == 8
    assert all(int(line.split(":")[0], 16) + 8 * i in words for line in rd for i in range(2))


def _sections_starting(lines: list[str], prefix: str) -> list[list[str]]:
    starts = [i for i, line in enumerate(lines) if line.startswith("crash> ")] + [len(lines)]
    return [lines[a + 1:b] for a, b in zip(starts, starts[1:], strict=False)
            if lines[a].startswith(f"crash> {prefix}")]


def test_set_t_moves_bt_and_dollar_c() -> None:
    """::set -t makes a task current: bt and $c follow it (the panic task at open)."""
    target = target_for(KASLR, "dump.202611221942")
    theirs = dict(by_task(section(crash_output(KASLR, "dump.202611221942"), "foreach bt")))
    init = next(t for t, lines in theirs.items() if lines[0].startswith("PID: 1 "))
    panic = target.current_thread
    assert panic is not None and panic.name == "crashapp"
    try:
        out, _ = run(target, "::set -t 0t1", "bt", "$c")
    finally:
        target.set_current_thread(panic.address or 0)      # the target is shared by the tests
    lines = out.splitlines()
    assert lines[1:1 + len(theirs[init])] == theirs[init]
    names = [m[3] for line in theirs[init] if (m := _FRAME.match(line))]
    assert [x.split("+")[0].split("(")[0] for x in lines[1 + len(theirs[init]):]] == names
