"""Walkers over a process: its threads (kernel dumps: tasks, in walkers/linux.py)."""

from __future__ import annotations

from collections.abc import Iterator

from pmdb.commands import Context, walker


@walker("thread", synopsis="every thread's id", example="::walk thread | ::findstack")
def walk_thread(ctx: Context, start: int | None) -> Iterator[int]:
    """The id of each thread (tid for a user core), in the dump's order; with a start
    address, only that thread. On a kernel dump, task_struct addresses: every task, or
    the thread group of the task given as the start. Pipe into ::findstack or ::regs."""
    target = ctx.target
    if ctx.is_kernel:
        yield from ctx.kernel.thread_addresses(start)
        return
    if start is not None:
        yield target.thread_by_id(start).id
        return
    for t in target.threads():
        yield t.id
