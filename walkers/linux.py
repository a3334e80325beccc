"""Walkers over a Linux kernel dump: tasks, modules and CPUs.

The ``thread`` walker is shared with user cores: walkers/user.py dispatches
on the target's kind and asks LinuxKernel.thread_addresses for kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pmdb.commands import Context, walker
from pmdb.errors import CommandError


def _kernel(ctx: Context) -> Any:
    target = ctx.target
    if target.kind != "vmcore" or not hasattr(target.os, "tasks"):
        raise CommandError(f"this walker needs a Linux kernel dump (the target is a {target.kind})")
    return target.os


def _problems(ctx: Context, kernel: Any) -> None:
    shown = ctx.state.setdefault("problems_shown", set())
    for problem in kernel.problems:
        if problem not in shown:
            shown.add(problem)
            ctx.out.error(problem)


@walker("task", synopsis="every task (process and thread), idle tasks included",
        type_name="struct task_struct", example="::walk task | ::print pid comm")
def walk_task(ctx: Context, start: int | None) -> Iterator[int]:
    """Each task_struct in crash's ps order: the idle task of every CPU, then every
    thread of every thread group by pid. With a start address, the tasks from that one on.
    A damaged task list is reported in one line; the tasks found are still walked."""
    kernel = _kernel(ctx)
    tasks = kernel.tasks()
    addrs = [t.address for t in tasks]
    if start is not None:
        if start not in addrs:
            raise CommandError(f"{start:#x} is not a task on the task list")
        addrs = addrs[addrs.index(start):]
    yield from addrs
    _problems(ctx, kernel)


@walker("module", synopsis="every loaded kernel module (struct module)", type_name="struct module",
        example="::walk module | ::print struct module name")
def walk_module(ctx: Context, start: int | None) -> Iterator[int]:
    """Each struct module on the kernel's ``modules`` list, in list order (newest first)."""
    kernel = _kernel(ctx)
    for mod in kernel.km.modules:
        if start is None or mod.address == start:
            yield mod.address


@walker("cpu", synopsis="every CPU's runqueue (struct rq)", type_name="struct rq",
        example="::walk cpu | ::print struct rq nr_running curr")
def walk_cpu(ctx: Context, start: int | None) -> Iterator[int]:
    """The per-CPU runqueue of each CPU, CPU 0 first; with a start, only that CPU number."""
    for cpu in _kernel(ctx).cpus():
        if cpu.runqueue and (start is None or start == cpu.index):
            yield cpu.runqueue
