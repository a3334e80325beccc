"""Stack dcmds: $c (::stack), $C, ::findstack and crash's bt, on user cores and kernels.

Frames come from the target's OS model (``target.stack(thread)``), so the same
commands serve user cores and kernel tasks. mdb's formats: a frame line is
``sym+off(args)``; $C and ::findstack put the frame's address in front of it,
zero-padded to the pointer width as mdb does. On a kernel a module's frame
ends in `` [module]`` and the address is the stack slot the frame's return
address was read from (linux_stack_text.frame_address). ``bt`` prints
crash's layout on a kernel (linux_stack_text.py) and $c's on a user core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import number
from pmdb.errors import CommandError, FaultError, PmdbError
from pmdb.os.linux.debuginfo import LineAt, debuginfo_for
from pmdb.os.linux.stacks.frames import lookup_address
from pmdb.output import Cell, Column, Hex
from pmdb.target import Target
from pmdb.threads import Thread
from pmdb.unwind.frame import Frame
from pmdb.unwind.params import Param, frame_inlined, frame_locals, frame_params

from .linux_stack import bt_command
from .linux_stack_text import findstack_text, frame_call, kernel_frames
from .linux_stack_text import frame_address as kernel_frame_address
from .source_lines import source_lines

_MDB_ARGLIM = 6   # mdb shows at most this many arguments per frame by default
_GDB_ARGLIM = 32  # gdb's bt shows every parameter


@dcmd("$c", addr="optional", aliases=("stack",), synopsis="print the stack backtrace",
      example="$c", usage="[-l] [nargs]", opts={"l": "lines"})
def stack_c(ctx: Context, nargs: int = 0, lines: bool = False) -> None:
    """The current thread's stack (or that of the thread whose id is given as the
    address: a tid on a user core, a task_struct address or pid on a kernel),
    innermost frame first, one ``function+offset(args)`` line per frame.
    Arguments (as many as ``nargs`` asks for) are, on a user core whose function has DWARF
    (-g, or a separate debug file), its parameters by name as gdb shows them
    (``kind=kind@entry=1``: the value at pc and the one the caller passed, from its call
    site; ``<optimized out>`` where neither can be known); otherwise what the ABI leaves
    findable (i386 stack words, SPARC %i registers); x86-64 passes them in registers that
    the callee may have reused, so without DWARF they print as ``()``. -l (a kernel with
    its debug vmlinux or a module's debug file): `` at FILE:LINE`` after each frame, the
    line of the call a return address comes back to, as gdb shows it."""
    thread, frames = _stack(ctx)
    _print_frames(ctx, thread, frames, with_fp=False, nargs=_nargs(nargs), lines=lines)


@dcmd("$C", addr="optional", synopsis="print the stack backtrace with frame addresses",
      example="$C", usage="[-l] [nargs]", opts={"l": "lines"})
def stack_cc(ctx: Context, nargs: int = 0, lines: bool = False) -> None:
    """Like $c, with each frame's address first: the frame-pointer value of a
    standard x86 frame (the CFA minus two words, so it is defined for code built
    without frame pointers too), or the %sp of a SPARC frame (biased, as the
    hardware keeps it). On a kernel: the stack slot of the frame's return address. -l: as $c's."""
    thread, frames = _stack(ctx)
    _print_frames(ctx, thread, frames, with_fp=True, nargs=_nargs(nargs), lines=lines)


@dcmd("findstack", addr="required", walker="thread", opts={"v": "verbose"},
      synopsis="print a thread's stack, mdb style", example="::walk thread | ::findstack",
      usage="[-v] [pid | thread ...]")
def findstack(ctx: Context, *args: Any, verbose: bool = False) -> None:
    """The stack of the thread whose id is the address (every thread without one):
    ``stack pointer for thread <tid>: <sp>``, the innermost frame in brackets with its
    stack pointer, then each caller with its frame address. -v adds the arguments
    that can be recovered (see $c). On a kernel the address is a task_struct (or a
    pid) and the thread is named by its task_struct; x86-64 keeps no arguments, so
    -v shows instead the registers each exception frame (pt_regs) saved. Arguments
    (``::findstack 0t102``) name the threads instead: on a kernel each is a pid or
    task_struct and every thread of its thread group is shown; on a user core, a thread id.
    With debug info (a kernel's debug vmlinux, modules' debug files), -v puts each frame's
    source file and line under it."""
    if args:
        if ctx.in_loop and not ctx.first:
            return        # the session re-runs an unaddressed ::findstack over every thread: once is all
        picked = [_threads_named(ctx, a) for a in args]       # every word checked before output
        for n, addr in enumerate(a for group in picked for a in group):
            findstack(replace(ctx, addr=addr, argv=(), in_loop=True, first=n == 0), verbose=verbose)
        return
    try:
        thread, frames = _stack(ctx)
    except PmdbError as err:
        if not ctx.in_loop:
            raise
        ctx.out.error(f"{ctx.addr or 0:x}: {err}")      # one bad thread; the loop goes on
        return
    nargs = _MDB_ARGLIM if verbose else 0
    line_at = source_lines(ctx) if verbose else None
    ctx.out.table(FRAME_COLUMNS, _frame_rows(ctx.target, thread, frames, nargs, line_at),
                  text=findstack_lines(ctx.target, thread, frames, verbose, line_at))
    _report_stop(ctx, thread, frames)


@dcmd("bt", addr="optional",
      opts={"a": "active", "f": "full", "t": "text", "s": "symoff", "x": "hexoff",
            "e": "eframes", "l": "lines"},
      synopsis="print a backtrace, crash style (bt -a: every CPU's task)",
      example="bt -a", usage="[-a] [-f] [-t] [-e] [-l] [-s [-x]] [pid | task ...]")
def bt(ctx: Context, *args: Any, active: bool = False, full: bool = False, text: bool = False,
       symoff: bool = False, hexoff: bool = False, eframes: bool = False, lines: bool = False) -> None:
    """crash's bt on a kernel: the current task's stack (or each task given by pid, in
    decimal as crash reads it, or task_struct address) under crash's ``PID: TASK: CPU:
    COMMAND:`` header, one `` #N [addr] func at pc [module]`` line per frame, the
    ``[exception RIP: sym+off]`` register block of each exception frame, the user
    registers after the syscall entry, ``--- <IRQ stack> ---`` where the stack left a
    CPU's IRQ stack. -a: the task on each CPU; -f: the stack words of each frame; -t:
    every text address on the stack from the first frame up, stale ones too. The
    registers of a CPU that was not the panicking one are shown first, as crash does on
    a kdump. -s: each frame's ``func+offset`` (-s -x: in hex); -e: every exception
    frame (pt_regs) found by searching the stack, stale ones too; -l: each frame's source
    file and line under it, from the debug vmlinux and modules' debug files. On a user core, bt is $c
    with every frame's DWARF parameters, as gdb's bt shows them, and each call inlined at a
    frame's pc as a frame of its own marked ``(inlined)`` (-a: every thread), and
    ``bt full`` (or -f) lists each frame's local variables under it, as gdb's ``bt full``."""
    target = ctx.target
    if ctx.is_kernel:
        # crash's exact text (or its JSON records) comes whole from linux_stack.py
        offsets = ("hex" if hexoff else "dec") if symoff else ""
        bt_command(ctx, [str(a) for a in args], active=active, full=full, text=text, offsets=offsets,
                   eframes=eframes, lines=lines)
        return
    words = [str(a) for a in args]
    if any(w != "full" for w in words):
        raise CommandError(f"bt: on a user core the only argument is gdb's 'full' (got {words[0]!r})")
    threads = list(target.threads()) if active else [_thread(ctx)]
    for n, thread in enumerate(threads):
        if active:
            ctx.out.line(("\n" if n else "") + f"thread {thread.id}:")
        # as gdb's bt: each frame's parameters where DWARF names them, nothing else
        frames = target.stack(thread)
        if full or words:
            _print_frames_with_locals(ctx, thread, frames)
        else:
            _print_frames(ctx, thread, frames, with_fp=False, nargs=_GDB_ARGLIM, dwarf_only=True)


def findstack_lines(target: Target, thread: Thread, frames: list[Frame], verbose: bool,
                    line_at: LineAt | None = None) -> list[str]:
    """mdb's ::findstack text; a kernel task's comes from linux_stack_text.py."""
    if _is_kernel(target) and thread.address is not None:
        return findstack_text(target.symbols.resolve, thread.address, frames, verbose=verbose,
                              line_at=line_at)
    width = target.arch.ptr_size * 2
    nargs = _MDB_ARGLIM if verbose else 0
    if not frames:
        return [f"stack pointer for thread {thread.id}: (no frames)"]
    top = frames[0]
    lines = [f"stack pointer for thread {thread.id}: {top.sp:x}"]
    if top.pc:
        lines.append(f"[ {top.sp:0{width}x} {_call(target, frames, 0, nargs)} ]")
    for i, frame in enumerate(frames[1:], 1):
        lines.append(f"  {frame_address(target, frame):0{width}x} {_call(target, frames, i, nargs)}")
    return lines


def _nargs(value: object) -> int:
    """An argument count, typed as an mdb number (hex by default, 0t for decimal)."""
    if isinstance(value, str):
        value = number(value)
    if not isinstance(value, int) or value < 0:
        raise CommandError("the argument count must be a number (e.g. $c 3)")
    return value


def _thread(ctx: Context) -> Thread:
    target = ctx.target
    if ctx.addr is None:
        cur = target.current_thread
        if cur is None:
            raise CommandError("the target has no threads")
        return cur
    try:
        return target.thread_by_id(ctx.addr)
    except CommandError:
        if not ctx.is_kernel:
            raise
        # a kernel address that is in no task list: unwind it as a task all the same
        # (a task lost to a damaged list); _stack says in one line when it is not one
        return Thread(id=-1, registers={}, name="?", address=ctx.addr)


def _threads_named(ctx: Context, word: Any) -> list[int]:
    """What ``::findstack WORD`` shows: a kernel task's whole thread group (WORD a pid, in
    mdb's radix unless 0t, or a task_struct), or a user core's thread id."""
    value = ctx.value(word, what="thread")
    if ctx.is_kernel:
        return ctx.kernel.threads_of(ctx.kernel.find_task(value).address)
    if not any(t.id == value for t in ctx.target.threads()):
        raise CommandError(f"findstack: no thread {value:#x} ({value})")
    return [value]


def _stack(ctx: Context) -> tuple[Thread, list[Frame]]:
    thread = _thread(ctx)
    if thread.id == -1 and thread.address is not None:
        return thread, ctx.kernel.unwind_task(thread.address)
    return thread, ctx.target.stack(thread)


def _is_kernel(target: Target) -> bool:
    from pmdb.os.linux.kernel import LinuxKernel

    return isinstance(target.os, LinuxKernel)


def _shown(target: Target, frames: list[Frame]) -> list[Frame]:
    if _is_kernel(target):
        return kernel_frames(frames)
    return frames


# a frame: its address ($C, ::findstack) and call in the text; the rest for JSON
FRAME_COLUMNS = (Column("frame", "FRAME"), Column("function", "FUNCTION"), Column("level", text=False),
                 Column("thread", text=False), Column("task", text=False), Column("pc", text=False),
                 Column("sp", text=False), Column("args", text=False), Column("method", text=False),
                 Column("note", text=False), Column("file", text=False), Column("line", text=False))
CALL_COLUMNS = (replace(FRAME_COLUMNS[0], text=False), replace(FRAME_COLUMNS[1], gap=""), *FRAME_COLUMNS[2:])


def _frame_rows(target: Target, thread: Thread, frames: list[Frame], nargs: int,
                line_at: LineAt | None = None, suffix: bool = False,
                dwarf_only: bool = False) -> list[list[Cell]]:
    """One row per frame; ``line_at``: its source line in the file/line columns (and, with
    ``suffix``, after the call as `` at FILE:LINE``)."""
    width = target.arch.ptr_size * 2
    rows: list[list[Cell]] = []
    shown = _shown(target, frames)
    for i, f in enumerate(shown):
        if dwarf_only:          # gdb's bt: each call inlined at the pc is a frame of its own
            rows += _inlined_rows(target, thread, shown, i, width)
        where = line_at(lookup_address(f)) if line_at is not None else None
        call = _call(target, shown, i, nargs, dwarf_only)
        if suffix and where is not None:
            call += f" at {where[0]}:{where[1]}"
        rows.append([Hex(_address(target, f), width), call, f.level, thread.id,
                     Hex(thread.address) if thread.address is not None else None, Hex(f.pc), Hex(f.sp),
                     _arg_cells(target, shown, i, nargs, dwarf_only), f.method, f.note or None,
                     where[0] if where else None, where[1] if where else None])
    return rows


def _print_frames(ctx: Context, thread: Thread, frames: list[Frame], *, with_fp: bool,
                  nargs: int, lines: bool = False, dwarf_only: bool = False) -> None:
    line_at = source_lines(ctx) if lines else None
    ctx.out.table(FRAME_COLUMNS if with_fp else CALL_COLUMNS,
                  _frame_rows(ctx.target, thread, frames, nargs, line_at, suffix=True, dwarf_only=dwarf_only),
                  header=False, fit=False)
    _report_stop(ctx, thread, frames)


def _inlined_rows(target: Target, thread: Thread, frames: list[Frame], index: int,
                  width: int) -> list[list[Cell]]:
    """A row per call inlined at frames[index]'s pc, innermost first, marked ``(inlined)``
    (method "inline"), with the inlined function's parameters."""
    object_at = _code_objects(target)
    if object_at is None:
        return []
    found = frame_inlined(frames, index, target.arch, target.memory, object_at)
    f = frames[index]
    described = target.describe(f.pc, call_site=f.call_site)
    module = described.split("`")[0] + "`" if "`" in described else ""
    rows: list[list[Cell]] = []
    for call in found or []:
        args = ", ".join(p.text for p in call.params)
        rows.append([Hex(_address(target, f), width), f"{module}{call.name}({args}) (inlined)", f.level,
                     thread.id, None, Hex(f.pc), Hex(f.sp),
                     [{"name": p.name, "value": None if p.value is None else Hex(p.value), "entry": None}
                      for p in call.params], "inline", None, None, None])
    return rows


def _print_frames_with_locals(ctx: Context, thread: Thread, frames: list[Frame]) -> None:
    """gdb's ``bt full``: each frame, then its locals indented under it (``No locals.``
    where DWARF lists none, ``No symbol table info available.`` where it has no DWARF)."""
    rows = _frame_rows(ctx.target, thread, frames, _GDB_ARGLIM, dwarf_only=True)
    text: list[str] = []
    i = -1
    for row in rows:
        if row[8] == "inline":        # an inlined call's variables are not listed
            row.append(None)
            text.append(str(row[1]))
            continue
        i += 1
        found = _locals(ctx.target, frames, i)
        row.append(None if found is None else
                   [{"name": v.name, "value": None if v.value is None else Hex(v.value), "size": v.size,
                     "type": v.aggregate or None}
                    for v in found])
        text.append(str(row[1]))
        if found is None:
            text.append("No symbol table info available.")
        elif not found:
            text.append("No locals.")
        text += [f"        {v.assignment}" for v in found or []]
    ctx.out.table((*CALL_COLUMNS, Column("locals", text=False)), rows, text=text)
    _report_stop(ctx, thread, frames)


def _locals(target: Target, frames: list[Frame], index: int) -> list[Param] | None:
    object_at = _code_objects(target)
    if object_at is None:
        return None
    return frame_locals(frames, index, target.arch, target.memory, object_at)


def _call(target: Target, frames: list[Frame], index: int, nargs: int, dwarf_only: bool = False) -> str:
    frame = frames[index]
    params = _params(target, frames, index) if nargs > 0 else None
    if params is not None:
        args = ", ".join(p.text for p in params[:nargs])
    else:
        args = "" if dwarf_only else ", ".join(f"{a:x}" for a in _args(target, frame, nargs))
    if _is_kernel(target):
        return frame_call(target.symbols.resolve, frame, args)
    return f"{target.describe(frame.pc, call_site=frame.call_site)}({args})"


def _params(target: Target, frames: list[Frame], index: int) -> list[Param] | None:
    """A frame's parameters by name from DWARF (a user core's object's debug file or its own
    -g; a kernel's debug vmlinux), with gdb's entry values; None where no DWARF describes
    its function."""
    object_at = _code_objects(target)
    if object_at is None:
        return None
    return frame_params(frames, index, target.arch, target.memory, object_at)


def _code_objects(target: Target) -> Callable[[int], Any] | None:
    """address -> the object whose DWARF describes the code there: a user core's mapped
    file, or a kernel's vmlinux (its modules' frames have none here)."""
    if _is_kernel(target):
        info = debuginfo_for(target.os)
        return info.code_at if getattr(getattr(target.os, "km", None), "vmlinux", "") else None
    return getattr(getattr(target.os, "objects", None), "object_at", None)


def _arg_cells(target: Target, frames: list[Frame], index: int, nargs: int,
               dwarf_only: bool = False) -> list[Any]:
    """The args column of a frame's JSON row: {name, value, entry} per DWARF parameter (None
    where not known), else the ABI's words."""
    params = _params(target, frames, index) if nargs > 0 else None
    if params is not None:
        return [{"name": p.name, "value": None if p.value is None else Hex(p.value),
                 "entry": None if p.entry is None else Hex(p.entry)} for p in params[:nargs]]
    return [] if dwarf_only else [Hex(a) for a in _args(target, frames[index], nargs)]


def _address(target: Target, frame: Frame) -> int:
    if _is_kernel(target):
        return kernel_frame_address(frame)
    return frame_address(target, frame)


def frame_address(target: Target, frame: Frame) -> int:
    """What mdb prints before a frame: its frame pointer on x86, its %sp on SPARC."""
    arch = target.arch
    if arch.name == "sparc64":
        return frame.sp
    if frame.cfa is not None and arch.name in ("x86_64", "i386"):
        return frame.cfa - 2 * arch.ptr_size   # where a standard prologue's push of %rbp lands
    fp = frame.fp
    return fp if fp is not None else frame.sp


def _args(target: Target, frame: Frame, nargs: int) -> list[int]:
    """Arguments where the ABI keeps them findable after the call; none otherwise."""
    if nargs <= 0:
        return []
    arch = target.arch
    if arch.name == "sparc64":
        return [frame.regs[f"i{i}"] for i in range(min(nargs, 6)) if f"i{i}" in frame.regs]
    if arch.name == "i386" and frame.cfa is not None:
        out = []
        for i in range(nargs):
            try:
                out.append(target.memory.u32(frame.cfa + 4 * i))
            except FaultError:
                break
        return out
    return []


def _report_stop(ctx: Context, thread: Thread, frames: list[Frame]) -> None:
    """Say why the walk ended, unless it reached the outermost frame normally."""
    if not frames:
        return
    who = f"task {thread.address:x}" if ctx.is_kernel and thread.address else f"thread {thread.id}"
    if frames[0].method == "scan" and frames[0].note and len(frames) > 1:
        ctx.out.error(f"{who}: {frames[0].note}")        # where the walk started, and why
    note = frames[-1].note
    if note and not note.startswith("end of"):
        ctx.out.error(f"{who}: backtrace stopped: {note}")
