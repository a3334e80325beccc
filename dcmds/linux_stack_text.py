"""Kernel stacks as text: crash's ``bt`` layout, and mdb's frame names for kernel frames.

The unwinder (pmdb.os.linux.arch.x86_64.unwind) gives every frame it finds; crash's ``bt``
shows a subset in its own layout (pmdb.os.linux.arch.x86_64.unwind.crash_numbered says
which frames it numbers and with which ``[addr]``). This module turns a
task's frames into crash's lines: the ``PID: ... TASK: ...`` header,
`` #N [addr] func at pc [module]``, the ``[exception RIP: sym+off]`` block
with its registers, the user registers after the syscall entry, the
``--- <IRQ stack> ---`` marker where the walk left a CPU stack, and with
``-f`` the stack words between frames. mdb's dcmds ($c, ::findstack,
::stacks) name the same frames ``sym+0xoff`` with `` [module]`` after it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pmdb.errors import CommandError, PmdbError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.debuginfo import LineAt
from pmdb.os.linux.stacks.frames import crash_numbered, lookup_address, unwind_kernel_task
from pmdb.symbols.table import Symbol
from pmdb.unwind.frame import Frame

Resolve = Callable[[int], "tuple[Symbol, int] | None"]
ReadWords = Callable[[int, int], Sequence[int]]

# crash's register block, row by row after the RIP/RSP/RFLAGS line (x86_64_exception_frame)
_REG_ROWS = (("RAX", "RBX", "RCX"), ("RDX", "RSI", "RDI"), ("RBP", "R8", "R9"),
             ("R10", "R11", "R12"), ("R13", "R14", "R15"))
# how crash names the stacks a walk can leave: the IRQ stack, and the IST stacks by their
# role; the names are pmdb.os.linux.arch.x86_64.stacks'
_STACK_LABELS = {"IRQ": "IRQ stack", "NMI": "NMI exception stack", "#DB": "DEBUG exception stack",
                 "#DF": "DOUBLEFAULT exception stack", "#MC": "MCE exception stack",
                 "#VC": "VC exception stack", "#VC2": "VC2 exception stack",
                 "entry": "ENTRY TRAMPOLINE stack"}


@dataclass(frozen=True)
class TaskLine:
    """What crash's header line names: pid, task_struct, CPU and command."""

    pid: int
    task: int
    cpu: int
    comm: str


def header(t: TaskLine) -> str:
    """``PID: 102      TASK: ffff...  CPU: 1    COMMAND: "crashapp"`` (crash's widths)."""
    return f'PID: {t.pid:<7}  TASK: {t.task:x}  CPU: {t.cpu:<3}  COMMAND: "{t.comm}"'


def register_block(regs: dict[str, int], *, orig_rax: bool = True) -> list[str]:
    """crash's register block. Registers the frame does not have (an iret-only frame) are
    left out of their row; ``orig_rax`` is False for a CPU's own registers, as crash
    prints those."""
    if "x29" in regs:
        return _arm64_block(regs)
    lines = []
    for row in _BLOCK_ROWS if orig_rax else _BLOCK_ROWS_CPU:
        cells = [f"{label}{format(value, width)}" for label, key, width in row
                 if (value := regs.get(key)) is not None]
        if cells:
            lines.append("    " + "  ".join(cells))
    return lines


def _block_cell(label: str, width: int = 16, align: int = 3) -> tuple[str, str, str]:
    """(the label as crash pads it, the register's key, the value's format)."""
    return f"{label:>{align}}: ", "eflags" if label == "RFLAGS" else label.lower(), f"0{width}x"


_BLOCK_ROWS = ((_block_cell("RIP"), _block_cell("RSP"), _block_cell("RFLAGS", 8)),
               *(tuple(_block_cell(n) for n in names) for names in _REG_ROWS),
               (_block_cell("ORIG_RAX"), _block_cell("CS", 4, 2), _block_cell("SS", 4, 2)))
_BLOCK_ROWS_CPU = (*_BLOCK_ROWS[:-1], _BLOCK_ROWS[-1][1:])     # a CPU's registers: no ORIG_RAX


def exception_rip(resolve: Resolve, pc: int) -> str:
    """``sym+off`` with a decimal offset, as crash's ``[exception RIP: ...]`` shows it."""
    hit = resolve(pc)
    if hit is None:
        return "unknown or invalid address"
    sym, off = hit
    return f"{sym.name}+{off}" if off else sym.name


def frame_line(level: int, addr: int, pc: int, resolve: Resolve, offsets: str = "") -> str:
    """`` #N [addr] func at pc [module]``: crash names the return address itself.
    ``offsets`` is bt -s's ``func+off`` ("dec") or bt -s -x's ``func+0xoff`` ("hex")."""
    hit = resolve(pc)
    name, module = (hit[0].name, hit[0].module) if hit is not None else (f"{pc:x}", None)
    if hit is not None and hit[1] and offsets:
        name += f"+{hit[1]:#x}" if offsets == "hex" else f"+{hit[1]}"
    text = f"{'#' + str(level):>3} [{addr:8x}] {name} at {pc:x}"
    return text + (f" [{module}]" if module else "")


def crash_bt(frames: list[Frame], resolve: Resolve, *, lead: bool = True,
             read_words: ReadWords | None = None, offsets: str = "",
             line_at: LineAt | None = None) -> list[str]:
    """A task's frames as crash's bt prints them (after the header). ``lead``: show the CPU's
    registers as an exception block when the stack starts from them; ``read_words``: with
    it, the words between consecutive frames on one stack (``bt -f``); ``line_at``: with it,
    ``    FILE: LINE`` of each frame's pc and each exception RIP (``bt -l``), where known."""
    def source(pc: int) -> list[str]:
        found = line_at(pc) if line_at is not None else None
        return [f"    {found[0]}: {found[1]}"] if found else []

    def offset_of(addr: int) -> int | None:
        hit = resolve(addr)
        return hit[1] if hit is not None else None

    numbered = {id(f): addr for f, addr in crash_numbered(frames, offset_of)}
    lines: list[str] = []
    level, stack = 0, frames[0].stack_name if frames else ""
    prev: tuple[int, str] | None = None          # the last numbered frame's [addr] and stack
    for i, f in enumerate(frames):
        if f.stack_name != stack and stack in _STACK_LABELS and f.stack_name != "user":
            lines.append(f"--- <{_STACK_LABELS[stack]}> ---")
        stack = f.stack_name if f.stack_name != "user" else stack
        if i == 0 and f.slot is None:
            if lead and f.stack_name != "user" and f.pc:
                lines.append(f"    [exception RIP: {exception_rip(resolve, f.pc)}]")
                lines += register_block(f.regs, orig_rax=False)   # crash gives it no line
            continue
        addr = numbered.get(id(f))
        if addr is not None:
            if read_words is not None and prev is not None and prev[1] == f.stack_name:
                lines += frame_words(read_words, prev[0] + 8, addr)
            lines.append(frame_line(level, addr, f.pc, resolve, offsets))
            lines += source(f.pc)
            level, prev = level + 1, (addr, f.stack_name)
        elif f.exception is not None:
            if f.stack_name != "user":
                lines.append(f"    [exception RIP: {exception_rip(resolve, f.pc)}]")
            lines += register_block(f.exception)
            if f.stack_name != "user":
                lines += source(f.pc)
    return lines


def _arm64_block(regs: dict[str, int]) -> list[str]:
    """crash's arm64 pt_regs block: PC, LR, SP and PSTATE, then X29 down to X0, three a row."""
    def cell(name: str) -> str:
        return f"{name.upper():>3}: {regs[name]:016x}"

    lines = ["    " + "  ".join(cell(n) for n in ("pc", "x30", "sp") if n in regs).replace("X30", " LR")]
    if "pstate" in regs:
        lines[0] += f"  PSTATE: {regs['pstate']:08x}"
    names = [f"x{i}" for i in range(29, -1, -1) if f"x{i}" in regs]
    lines += ["    " + "  ".join(cell(n) for n in names[i:i + 3]) for i in range(0, len(names), 3)]
    return lines


def frame_words(read_words: ReadWords, lo: int, hi: int) -> list[str]:
    """crash's ``bt -f`` contents of one frame: the words from ``lo`` up to and including
    ``hi``, two per line, each followed by a space as crash prints them."""
    if hi < lo:
        return []
    count = (hi - lo) // 8 + 1
    try:
        words = list(read_words(lo, count))
    except PmdbError as err:
        return [f"    {lo:x}: (unreadable: {err})"]
    lines = []
    for i in range(0, count, 2):
        pair = "".join(f"{w:016x} " for w in words[i:i + 2])
        lines.append(f"    {lo + 8 * i:x}: {pair}")
    return lines


# -- mdb's view of the same frames ---------------------------------------------------------

def kernel_frames(frames: list[Frame]) -> list[Frame]:
    """The frames mdb-style listings show: every kernel frame (the syscall's user registers
    are not a kernel frame)."""
    return [f for f in frames if f.stack_name != "user" and (f.pc or f.slot is not None)]


def frame_address(frame: Frame) -> int:
    """The address mdb-style kernel listings print before a frame: the stack slot its pc
    was read from (crash's [addr]), or its stack pointer when the pc came from registers
    (the CPU's, or an exception frame's pt_regs). x86-64 kernels built with ORC keep no
    frame pointer to show instead."""
    return frame.slot if frame.slot is not None else frame.sp


def frame_name(resolve: Resolve, frame: Frame) -> tuple[str, str]:
    """(``sym+0xoff``, module or "") of a frame. A return address is looked up one byte
    back, so one past a noreturn call still names its caller; the offset is the pc's."""
    hit = resolve(lookup_address(frame))
    if hit is None:
        return f"{frame.pc:#x}", ""
    sym, _ = hit
    off = frame.pc - sym.addr
    return (f"{sym.name}+{off:#x}" if off else sym.name), sym.module or ""


def frame_call(resolve: Resolve, frame: Frame, args: str = "") -> str:
    """mdb's ``sym+0xoff(args)``, with `` [module]`` for a module's frame."""
    name, module = frame_name(resolve, frame)
    return f"{name}({args})" + (f" [{module}]" if module else "")


# -- crash's bt and foreach bt over a kernel target ----------------------------------------

def task_numbers(kernel: Any, text: str) -> list[int]:
    """The task_structs crash's bt argument names: a pid (decimal, as crash reads it; 0t
    works too) or a task_struct address (hex). A pid may name several tasks (pid 0)."""
    low = text.lower()
    try:
        if low.startswith("0t") or (low.isdigit() and len(low) < 12):
            pid = int(low[2:] if low.startswith("0t") else low, 10)
            hits = [t.address for t in kernel.tasks() if t.pid == pid]
            if not hits:
                raise CommandError(f"invalid task or pid value: {text}")
            return hits
        return [int(low, 16)]
    except ValueError:
        raise CommandError(f"invalid task or pid value: {text}") from None


def bt_tasks(target: Any, tasks: Sequence[int], *, full: bool = False,
             offsets: str = "", line_at: LineAt | None = None) -> Iterator[tuple[int, list[str]]]:
    """(task, crash's bt lines) for each task; a task that cannot be shown gives one line
    ``bt: <why>`` and the next goes on. ``offsets``: as frame_line's (bt -s, bt -s -x)."""
    kernel = target.os
    threads = {t.address: t for t in target.threads()}
    panic = kernel.panic_task()
    resolve = memo_resolve(target.symbols.resolve)
    words = _word_reader(target.memory) if full else None
    for addr in tasks:      # the bar is the caller's (ctx.progressing in print_bts)
        try:
            line, frames = _task_frames(target, threads.get(addr), addr)
        except PmdbError as err:
            yield addr, [f"bt: {err}"]
            continue
        lead = panic is None or addr != panic.address
        lines = [header(line), *crash_bt(frames, resolve, lead=lead, read_words=words, offsets=offsets,
                                         line_at=line_at)]
        lines += _stop_lines(frames)
        yield addr, lines


def memo_resolve(resolve: Resolve) -> Resolve:
    """resolve, each address looked up once: thousands of tasks share their frames."""
    seen: dict[int, Any] = {}

    def hit(addr: int) -> Any:
        if addr not in seen:
            seen[addr] = resolve(addr)
        return seen[addr]

    return hit


def _task_frames(target: Any, thread: Any, addr: int) -> tuple[TaskLine, list[Frame]]:
    if thread is not None:
        cpu = thread.extra.get("cpu", 0)
        return TaskLine(thread.id, addr, int(cpu) if isinstance(cpu, int) else 0, thread.name), \
            target.stack(thread)
    task = target.os.task(addr)          # not in the task lists: read it (CorruptionError if no task)
    return TaskLine(task.pid, addr, task.cpu, task.comm), unwind_kernel_task(target.os, addr, None)


def _stop_lines(frames: list[Frame]) -> list[str]:
    """Why a stack ends early (and how it was started when it had to be scanned for)."""
    out = []
    if frames and frames[0].method == "scan" and frames[0].note and len(frames) > 1:
        out.append(f"bt: {frames[0].note}")
    if frames and frames[-1].note:
        out.append(f"bt: backtrace stopped: {frames[-1].note}")
    return out


def _word_reader(mem: AddressSpace) -> ReadWords:
    def read(addr: int, count: int) -> Sequence[int]:
        return struct.unpack(f"<{count}Q", mem.read(addr, 8 * count))
    return read


def findstack_text(resolve: Resolve, task: int, frames: list[Frame], *, verbose: bool = False,
                   addresses: bool = True, line_at: LineAt | None = None) -> list[str]:
    """mdb's ::findstack for a kernel task: ``stack pointer for thread <task>: <sp>``, the
    innermost frame in brackets, then each caller (with its address unless
    ``addresses`` is False, as ::threadlist -v shows them). x86-64 keeps no arguments:
    ``verbose`` shows each exception frame's saved registers (pt_regs) instead; ``line_at``
    puts each frame's source line under it (the call's, for a return address)."""
    def source(frame: Frame) -> list[str]:
        found = line_at(lookup_address(frame)) if line_at is not None else None
        return [f"    at {found[0]}:{found[1]}"] if found else []

    shown = kernel_frames(frames)
    if not shown:
        return [f"stack pointer for thread {task:x}: (no frames)"]
    top = shown[0]
    lines = [f"stack pointer for thread {task:x}: {frame_address(top):x}",
             f"[ {frame_address(top):016x} {frame_call(resolve, top)} ]", *source(top)]
    for frame in shown[1:]:
        addr = f"{frame_address(frame):016x} " if addresses else ""
        lines.append(f"  {addr}{frame_call(resolve, frame)}")
        lines += source(frame)
        if verbose and frame.exception is not None:
            lines += ["    " + text for text in register_block(frame.exception)]
    last = frames[-1] if frames else None
    if verbose and last is not None and last.stack_name == "user" and last.exception is not None:
        lines += ["    " + text for text in register_block(last.exception)]
    return lines


def bt_records(target: Any, tasks: Sequence[int]) -> Iterator[dict[str, Any]]:
    """--json: one record per frame crash numbers (level, [addr], function, pc, module) and
    per register block (the registers as fields), each with its task; one per failure."""
    threads = {t.address: t for t in target.threads()}
    resolve = target.symbols.resolve

    def offset_of(addr: int) -> int | None:
        hit = resolve(addr)
        return hit[1] if hit is not None else None

    for addr in tasks:
        try:
            line, frames = _task_frames(target, threads.get(addr), addr)
        except PmdbError as err:
            yield {"task": f"{addr:#x}", "error": str(err)}
            continue
        who = {"pid": line.pid, "task": f"{addr:#x}", "cpu": line.cpu, "comm": line.comm}
        numbered = {id(f): a for f, a in crash_numbered(frames, offset_of)}
        level = 0
        for f in frames:
            if id(f) in numbered:
                hit = resolve(f.pc)
                yield {**who, "level": level, "addr": f"{numbered[id(f)]:#x}", "pc": f"{f.pc:#x}",
                       "function": hit[0].name if hit else None, "module": hit[0].module if hit else None}
                level += 1
            elif f.exception is not None or (f.slot is None and f is frames[0]):
                regs = f.exception if f.exception is not None else f.regs
                yield {**who, "exception_rip": None if f.stack_name == "user" else exception_rip(resolve, f.pc),
                       **{k: f"{v:#x}" for k, v in regs.items()}}
        if frames and frames[-1].note:
            yield {**who, "error": f"backtrace stopped: {frames[-1].note}"}


def bt_text_scan(target: Any, addr: int) -> list[str]:
    """crash's ``bt -t``: from the task's first frame up to its saved user registers, every
    stack word that is a kernel text address (``[slot] func at value``), stale ones
    included, then those registers."""
    from pmdb.types.value import Object

    kernel = target.os
    threads = {t.address: t for t in target.threads()}
    line, frames = _task_frames(target, threads.get(addr), addr)
    resolve = target.symbols.resolve

    def offset_of(pc: int) -> int | None:
        found = resolve(pc)
        return found[1] if found is not None else None

    numbered = crash_numbered(frames, offset_of)      # where crash's bt starts: its #0
    if not numbered:
        return [header(line), "bt: no kernel frames to start from"]
    first, start = numbered[0]
    hit = resolve(first.pc)
    lines = [header(line), f"{'START:':>20} {hit[0].name if hit else '?'} at {first.pc:x}"]
    task = Object(target.memory, kernel.types.lookup("struct task_struct"), addr)
    size = kernel.km.arch.thread_size(kernel.km.lookup)
    regs = kernel.types.lookup("struct pt_regs").sizeof()
    end = int(task.member("stack")) + size - regs
    if not start < end <= start + size:
        return [*lines, f"bt: the stack from {start:x} does not end at {end:x}"]
    words = struct.unpack(f"<{(end - start) // 8}Q", target.memory.read(start, end - start))
    for n, value in enumerate(words):
        found = resolve(value) if value >> 63 else None
        if found is None or found[0].kind != "func":
            continue
        module = f" [{found[0].module}]" if found[0].module else ""
        lines.append(f"  [{start + 8 * n:x}] {found[0].name} at {value:x}{module}")
    last = frames[-1]
    if last.stack_name == "user" and last.exception is not None:
        lines += register_block(last.exception)
    return lines
