"""A kernel stack as data: the unwinder every architecture provides, and crash's view of its frames.

Each CPU's kernel unwinder (pmdb.os.linux.arch.<cpu>) satisfies ``Unwinder``;
the generic kernel model and the dcmds call it through ``unwind_kernel_task``.
``crash_numbered`` is the frame selection crash's ``bt`` makes (which frames
get a number, and which ``[addr]``), kept here because both the text layout and
the JSON records use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast, runtime_checkable

from pmdb.os.linux.stacks.regions import StackRegion
from pmdb.unwind.frame import Frame


class Unwinder(Protocol):
    """A kernel unwinder, built once per dump (x86-64: ORC)."""

    def task_stack(self, task: int) -> StackRegion: ...

    def unwind_task(self, task: int, regs: dict[str, int] | None = None,
                    stack_base: int | None = None) -> list[Frame]: ...

    def unwind_regs(self, regs: dict[str, int], task: int | None = None) -> list[Frame]: ...


@runtime_checkable
class HasUnwinder(Protocol):
    """A kernel OS model that carries its unwinder (pmdb.os.linux.kernel.LinuxKernel)."""

    @property
    def unwinder(self) -> Unwinder: ...


def unwind_kernel_task(kernel: Unwinder | HasUnwinder, task_addr: int,
                       regs: dict[str, int] | None, stack_base: int | None = None) -> list[Frame]:
    """A task's kernel stack (see Unwinder.unwind_task): ``regs`` are its CPU's registers
    when it was running, None to start from the frame it left when it was switched out;
    ``stack_base`` is task->stack when the task list read it (an unwinder may read it again).
    Raises CorruptionError (one line) when ``task_addr`` is not a task; a stack that
    cannot be followed to its end carries the reason in its last frame's ``note``."""
    # getattr, not isinstance: a runtime_checkable Protocol's check is slow (10,000 tasks)
    unwinder = cast(Unwinder, getattr(kernel, "unwinder", kernel))
    return unwinder.unwind_task(task_addr, regs, stack_base)


def lookup_address(frame: Frame) -> int:
    """Where to look a frame up (symbol, line): a return address belongs to the call before
    it, and after a noreturn call it is already past the function's end (``foo.cold+0``)."""
    return frame.pc - 1 if frame.slot is not None else frame.pc


def crash_numbered(frames: list[Frame], offset_of: Callable[[int], int | None]) -> list[tuple[Frame, int]]:
    """The frames crash's ``bt`` numbers, each with its ``[addr]`` column. crash does not
    number the frame CPU registers point into, nor exception frames (it prints their
    registers instead); it drops a return address at offset 0 of a symbol (``offset_of``
    gives an address's offset in its symbol); and after leaving the IRQ stack it prints
    the stack pointer it resumed at, not the return-address slot."""
    out: list[tuple[Frame, int]] = []
    prev_stack = ""
    for f in frames:
        if f.exception is not None:
            continue
        if f.slot is None or offset_of(f.pc) == 0:
            prev_stack = f.stack_name if f.slot is None else prev_stack
            continue
        left_irq = prev_stack == "IRQ" and f.stack_name != "IRQ"
        out.append((f, f.sp if left_irq else f.slot))
        prev_stack = f.stack_name
    return out
