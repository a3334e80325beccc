"""Stack dcmds: $c (::stack), $C and ::findstack, in mdb's output formats.

Frames come from the target's OS model (``target.stack(thread)``), so the same
commands serve user cores and, later, kernel threads. A frame line is
``sym+off(args)``; $C and ::findstack put the frame's address in front of it,
zero-padded to the pointer width as mdb does.
"""

from __future__ import annotations

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError, FaultError
from pmdb.target import Target, Thread
from pmdb.unwind.frame import Frame

_MDB_ARGLIM = 6   # mdb shows at most this many arguments per frame by default


@dcmd("$c", addr="optional", aliases=("stack", "bt"), synopsis="print the stack backtrace",
      example="$c", usage="[nargs]")
def stack_c(ctx: Context, nargs: int = 0) -> None:
    """The current thread's stack (or that of the thread whose id is given as the
    address), innermost frame first, one ``function+offset(args)`` line per frame.
    Arguments are shown only where the ABI leaves them findable (i386 stack words,
    SPARC %i registers) and only as many as ``nargs`` asks for; x86-64 passes them in
    registers that the callee may have reused, so they print as ``()``."""
    thread, frames = _stack(ctx)
    _print_frames(ctx, thread, frames, with_fp=False, nargs=_nargs(nargs))


@dcmd("$C", addr="optional", synopsis="print the stack backtrace with frame addresses",
      example="$C", usage="[nargs]")
def stack_cc(ctx: Context, nargs: int = 0) -> None:
    """Like $c, with each frame's address first: the frame-pointer value of a
    standard x86 frame (the CFA minus two words, so it is defined for code built
    without frame pointers too), or the %sp of a SPARC frame (biased, as the
    hardware keeps it)."""
    thread, frames = _stack(ctx)
    _print_frames(ctx, thread, frames, with_fp=True, nargs=_nargs(nargs))


@dcmd("findstack", addr="required", walker="thread", opts={"v": "verbose"},
      synopsis="print a thread's stack, mdb style", example="::walk thread | ::findstack",
      usage="[-v]")
def findstack(ctx: Context, verbose: bool = False) -> None:
    """The stack of the thread whose id is the address (every thread without one):
    ``stack pointer for thread <tid>: <sp>``, the innermost frame in brackets with its
    stack pointer, then each caller with its frame address. -v adds the arguments
    that can be recovered (see $c)."""
    thread, frames = _stack(ctx)
    target = ctx.target
    if ctx.out.json_mode:
        _print_frames(ctx, thread, frames, with_fp=True, nargs=_MDB_ARGLIM if verbose else 0)
        return
    width = target.arch.ptr_size * 2
    nargs = _MDB_ARGLIM if verbose else 0
    top = frames[0]
    ctx.out.line(f"stack pointer for thread {thread.id:x}: {top.sp:x}")
    if top.pc:
        ctx.out.line(f"[ {top.sp:0{width}x} {_call(target, top, nargs)} ]")
    for frame in frames[1:]:
        ctx.out.line(f"  {frame_address(target, frame):0{width}x} {_call(target, frame, nargs)}")
    _report_stop(ctx, thread, frames)


def _nargs(value: object) -> int:
    """An argument count, typed as an mdb number (hex by default, 0t for decimal)."""
    if isinstance(value, str):
        text = value.strip().lower()
        base = 16
        for prefix, b in (("0t", 10), ("0x", 16), ("0o", 8), ("0i", 2)):
            if text.startswith(prefix):
                text, base = text[2:], b
                break
        try:
            value = int(text, base)
        except ValueError:
            value = -1
    if not isinstance(value, int) or value < 0:
        raise CommandError("the argument count must be a number (e.g. $c 3)")
    return value


def _stack(ctx: Context) -> tuple[Thread, list[Frame]]:
    target = ctx.target
    if ctx.addr is not None:
        thread = target.thread_by_id(ctx.addr)
    else:
        cur = target.current_thread
        if cur is None:
            raise CommandError("the target has no threads")
        thread = cur
    return thread, target.stack(thread)


def _print_frames(ctx: Context, thread: Thread, frames: list[Frame], *, with_fp: bool,
                  nargs: int) -> None:
    target = ctx.target
    if ctx.out.json_mode:
        for f in frames:
            ctx.out.record(thread=thread.id, level=f.level, pc=f.pc, sp=f.sp,
                           frame=frame_address(target, f), function=target.describe(f.pc),
                           args=_args(target, f, nargs), method=f.method, note=f.note)
        return
    width = target.arch.ptr_size * 2
    for f in frames:
        prefix = f"{frame_address(target, f):0{width}x} " if with_fp else ""
        ctx.out.line(prefix + _call(target, f, nargs))
    _report_stop(ctx, thread, frames)


def _call(target: Target, frame: Frame, nargs: int) -> str:
    args = ", ".join(f"{a:x}" for a in _args(target, frame, nargs))
    return f"{target.describe(frame.pc)}({args})"


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
    note = frames[-1].note if frames else ""
    if note and not note.startswith("end of"):
        ctx.out.error(f"thread {thread.id}: backtrace stopped: {note}")
