"""Stacks for scripts: the unwinder's frames with their names (and source lines when known)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pmdb.api.lines import source_line
from pmdb.threads import Thread
from pmdb.unwind.frame import Frame

if TYPE_CHECKING:
    from pmdb.target import Target


@dataclass(frozen=True)
class StackFrame:
    """One frame: ``pc``, ``sp``, the ``function`` containing pc (None when no symbol does),
    ``offset`` of pc into it, ``module`` (a kernel module or a library; None for the kernel or
    the executable), ``source`` (file, line) when debug info says, and ``frame``: the
    unwinder's own record (registers known, how it was found, exception frames)."""

    level: int
    pc: int
    sp: int
    function: str | None
    offset: int
    module: str | None
    source: tuple[str, int] | None
    frame: Frame

    @property
    def symbol(self) -> str:
        """``function+0xoff`` (``module`function+0xoff``), or the hex pc."""
        if self.function is None:
            return f"{self.pc:#x}"
        name = f"{self.module}`{self.function}" if self.module else self.function
        return f"{name}+{self.offset:#x}" if self.offset else name

    @property
    def registers(self) -> dict[str, int]:
        return dict(self.frame.regs)

    def __str__(self) -> str:
        where = f" ({self.source[0]}:{self.source[1]})" if self.source else ""
        return f"#{self.level:<2} {self.sp:016x} {self.symbol}{where}"

    def __repr__(self) -> str:
        """Short and in hex, as a debugger shows a frame (the dataclass default is a page of
        decimal registers)."""
        where = f" {self.source[0]}:{self.source[1]}" if self.source else ""
        return f"<StackFrame #{self.level} {self.symbol} pc={self.pc:#x} sp={self.sp:#x}{where}>"


class Stack(list[StackFrame]):
    """A thread's frames, innermost first; prints as a ``bt``-like listing."""

    def __init__(self, thread: Thread, frames: list[StackFrame]) -> None:
        super().__init__(frames)
        self.thread = thread

    @property
    def functions(self) -> list[str | None]:
        return [f.function for f in self]

    def __str__(self) -> str:
        return "\n".join([_title(self.thread), *(str(f) for f in self)])

    def __repr__(self) -> str:
        return str(self)

    def __rich__(self) -> Any:
        from pmdb.api.display import rich_table

        rows = [{"#": f.level, "sp": f"{f.sp:#x}", "pc": f"{f.pc:#x}", "function": f.symbol,
                 "source": f"{f.source[0]}:{f.source[1]}" if f.source else ""} for f in self]
        return rich_table(rows, title=_title(self.thread))

    def _repr_html_(self) -> str:
        from pmdb.api.display import html_table

        rows = [{"#": f.level, "sp": f"{f.sp:#x}", "pc": f"{f.pc:#x}", "function": f.symbol,
                 "source": f"{f.source[0]}:{f.source[1]}" if f.source else ""} for f in self]
        return f"<div><i>{html.escape(_title(self.thread))}</i>{html_table(rows)}</div>"


def _title(thread: Thread) -> str:
    where = f" at {thread.address:#x}" if thread.address is not None else ""
    return f"thread {thread.id} ({thread.name}){where}"


def _call_pc(f: Frame) -> int:
    """The address whose name and line are the frame's: the call (pc - 1) for a return address.
    User unwinders mark those (call_site); a kernel's ORC frames are return addresses all."""
    return f.pc - 1 if f.method == "orc" and f.pc else f.lookup_pc


def stack_of(target: Target, thread: Thread) -> Stack:
    """The unwound stack of thread, each frame named from the target's symbols."""
    frames = []
    for f in target.stack(thread):
        hit = target.symbols.resolve(_call_pc(f))     # after a noreturn call, pc is the next function's
        sym = hit[0] if hit is not None else None
        frames.append(StackFrame(
            level=f.level, pc=f.pc, sp=f.sp,
            function=sym.name if sym is not None else None,
            offset=f.pc - sym.addr if sym is not None else 0,
            module=sym.module if sym is not None else None,
            source=source_line(target, _call_pc(f)), frame=f))
    return Stack(thread, frames)
