"""mdb's ``::whatthread``: which tasks hold a value on their kernel stack."""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.errors import FaultError
from pmdb.os.linux.mm.addresses import task_stacks
from pmdb.output import Column, Hex

WHATTHREAD_COLUMNS = (Column("task", "TASK"), Column("pid", "PID", ">"), Column("comm", "COMMAND"),
                      Column("where", "STACK ADDRESS"))


@dcmd("whatthread", addr="required", synopsis="the tasks whose kernel stacks hold a value",
      example="ffff8be102a71840::whatthread", opts={"v": "verbose"}, usage="[-v]")
def whatthread(ctx: Context, *_args: Any, verbose: bool = False) -> None:
    """Every task whose kernel stack (``task->stack`` to THREAD_SIZE above it) holds addr
    as an aligned word, as illumos mdb's ::whatthread finds the threads that refer to an
    address: one task address a line, or with -v its pid, command and each stack word
    that holds it. Piped, the task_structs go on. A stack the dump lacks is skipped."""
    value = ctx.require_addr()
    kernel = ctx.kernel
    mem = kernel.mem
    size = kernel.km.arch.thread_size(kernel.km.lookup)
    w = mem.ptr_size
    needle = value.to_bytes(w, mem.byteorder)
    rows = []
    for stack in ctx.progressing("::whatthread: every task's stack", task_stacks(kernel), len(kernel.tasks())):
        try:
            raw = mem.read(stack.base, size)
        except FaultError:
            continue
        hits = [stack.base + i for i in range(0, size, w) if raw[i:i + w] == needle]
        if not hits:
            continue
        if ctx.piped:
            ctx.emit(stack.task, kernel.types.find("struct task_struct"))
            continue
        if verbose:
            rows += [[Hex(stack.task), stack.pid, stack.comm, Hex(h)] for h in hits]
        else:
            ctx.out.table(WHATTHREAD_COLUMNS[:1], [[Hex(stack.task)]], header=False)
    if rows:
        ctx.out.table(WHATTHREAD_COLUMNS, rows)
