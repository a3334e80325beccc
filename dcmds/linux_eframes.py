"""crash's ``bt -e``: every exception frame (pt_regs) left on a task's kernel stack.

The search itself is CPU-specific and lives with the x86_64 kernel parts
(pmdb.os.linux.arch.x86_64.eframes); this module reads the stack and prints crash's
``KERNEL-MODE EXCEPTION FRAME AT:`` / ``USER-MODE EXCEPTION FRAME AT:`` blocks."""

from __future__ import annotations

import struct
from typing import Any

from pmdb.errors import PmdbError
from pmdb.os.linux.arch.x86_64.eframes import search_eframes
from pmdb.types.value import Object

from .linux_stack_text import TaskLine, exception_rip, header, register_block


def bt_eframes(target: Any, addr: int) -> list[str]:
    """crash's ``bt -e`` lines for one task: its header, then each pt_regs found on its
    stack, lowest address first; a task that cannot be read gives one ``bt: <why>`` line."""
    kernel = target.os
    if kernel.km.arch.name != "x86_64":
        return [f"bt: -e searches x86_64 stacks only, not {kernel.km.arch.name}"]
    try:
        task = kernel.task(addr)
        obj = Object(target.memory, kernel.types.lookup("struct task_struct"), addr)
        base = int(obj.member("stack"))
        size = kernel.km.arch.thread_size(kernel.km.lookup)
        words = struct.unpack(f"<{size // 8}Q", target.memory.read(base, size))
    except PmdbError as err:
        return [f"bt: {err}"]
    resolve = target.symbols.resolve

    def is_text(pc: int) -> bool:
        hit = resolve(pc) if pc >> 63 else None
        return hit is not None and hit[0].kind == "func"

    lines = [header(TaskLine(task.pid, addr, task.cpu, task.comm))]
    for frame in search_eframes(words, base, is_text):
        mode = "USER" if frame.user else "KERNEL"
        lines += ["", f"  {mode}-MODE EXCEPTION FRAME AT: {frame.address:x}"]
        if not frame.user:
            lines.append(f"    [exception RIP: {exception_rip(resolve, frame.regs['rip'])}]")
        lines += register_block(frame.regs)
    return lines
