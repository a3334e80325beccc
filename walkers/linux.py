"""Walkers over a Linux kernel dump: tasks, processes, modules and CPUs.

The ``thread`` walker is shared with user cores: walkers/user.py asks
LinuxKernel.thread_addresses when the target is a kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pmdb.commands import Context, walker
from pmdb.errors import CommandError

if TYPE_CHECKING:
    from pmdb.os.linux.kernel import LinuxKernel


def _problems(ctx: Context, kernel: LinuxKernel) -> None:
    shown = ctx.state.setdefault("problems_shown", set())
    for problem in kernel.problems:
        if problem not in shown:
            shown.add(problem)
            ctx.out.error(problem)


def _from(start: int | None, addrs: list[int], what: str) -> list[int]:
    """The addresses from ``start`` on (all without one); CommandError naming ``what`` the
    start should have been when it is not among them."""
    if start is None:
        return addrs
    if start not in addrs:
        raise CommandError(f"{start:#x} is not {what}")
    return addrs[addrs.index(start):]


@walker("task", synopsis="every task (process and thread), idle tasks included",
        type_name="struct task_struct", example="::walk task | ::print pid comm")
def walk_task(ctx: Context, start: int | None) -> Iterator[int]:
    """Each task_struct in crash's ps order: the idle task of every CPU, then every
    thread of every thread group by pid. With a start address, the tasks from that one on.
    A damaged task list is reported in one line; the tasks found are still walked."""
    kernel = ctx.kernel
    tasks = kernel.tasks()
    yield from _from(start, [t.address for t in tasks], "a task on the task list")
    _problems(ctx, kernel)


@walker("module", synopsis="every loaded kernel module (struct module)", type_name="struct module",
        example="::walk module | ::print struct module name")
def walk_module(ctx: Context, start: int | None) -> Iterator[int]:
    """Each struct module on the kernel's ``modules`` list, in list order (newest first)."""
    kernel = ctx.kernel
    for mod in kernel.modules():
        if start is None or mod.address == start:
            yield mod.address


@walker("proc", synopsis="every process: each thread group's leader and each CPU's idle task",
        type_name="struct task_struct", example="::walk proc | ::print pid comm")
def walk_proc(ctx: Context, start: int | None) -> Iterator[int]:
    """mdb's process walk on Linux: the tasks ``ps -G`` lists (a process is a thread group,
    named by its leader), in the task walk's order; with a start, the processes from it on."""
    kernel = ctx.kernel
    addrs = [t.address for t in kernel.tasks() if t.idle or t.leader in (0, t.address)]
    yield from _from(start, addrs, "a process (a thread group leader) on the task list")
    _problems(ctx, kernel)


@walker("modules", synopsis="every loaded kernel module (struct module): mdb's name for ::walk module",
        type_name="struct module", example="::walk modules | ::print struct module name")
def walk_modules(ctx: Context, start: int | None) -> Iterator[int]:
    """The module walk under mdb's plural name."""
    yield from walk_module(ctx, start)


@walker("cpu", synopsis="every CPU's runqueue (struct rq)", type_name="struct rq",
        example="::walk cpu | ::print struct rq nr_running curr")
def walk_cpu(ctx: Context, start: int | None) -> Iterator[int]:
    """The per-CPU runqueue of each CPU, CPU 0 first; with a start, only that CPU number."""
    for cpu in ctx.kernel.cpus():
        if cpu.runqueue and (start is None or start == cpu.index):
            yield cpu.runqueue
