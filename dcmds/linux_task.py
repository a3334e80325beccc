"""crash's ``task``: a task's header, then its task_struct and thread_info as gdb prints them."""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.output import Hex
from pmdb.types.gdbprint import gdb_struct, gdb_value
from pmdb.types.value import Object, follow_path

from .linux_files import crash_tasks
from .linux_proc import task_header
from .lists import symbol_namer

TASK_USAGE = "[-R member[,member...]] [pid | task ...]"


@dcmd("task", addr="optional", synopsis="crash's task: a task's task_struct and thread_info",
      example="task -R pid,comm 1", usage=TASK_USAGE)
def task_cmd(ctx: Context, *args: Any) -> None:
    """``task [-R m1,m2] [PID | TASK ...]`` (the current task when none is named): each
    task's header line, then its whole ``struct task_struct`` and ``struct thread_info`` in
    crash's (gdb's) layout, or with -R only the members named."""
    positional, opts = parse_options("task", {"R:": "members"}, args, TASK_USAGE)
    kernel = ctx.kernel
    members = [m for m in str(opts.get("members", "")).split(",") if m]
    task_type = kernel.types.lookup("struct task_struct")
    info_type = kernel.types.find("struct thread_info")
    describe = symbol_namer(ctx)
    for n, task in enumerate(crash_tasks(ctx, positional, "task")):
        obj = Object(ctx.target.memory, task_type, task.address)
        lines = ([""] if n else []) + [task_header(task)]       # a blank line between tasks
        if members:
            lines += [f"  {m} = {gdb_value(follow_path(obj, m), describe, 1)}," for m in members]
        else:
            lines += gdb_struct(obj, describe).splitlines()
            if info_type is not None:       # THREAD_INFO_IN_TASK: it is the task's first member
                lines += ["", *gdb_struct(Object(ctx.target.memory, info_type, _thread_info(obj)),
                                           describe).splitlines()]
        ctx.out.record({"task": Hex(task.address), "pid": task.pid}, text=lines)


def _thread_info(task: Object) -> int:
    """Where a task's thread_info is: inside it (THREAD_INFO_IN_TASK), else at its stack."""
    members = {m.name for m in task.type.strip().members}
    if "thread_info" in members:
        return task.member("thread_info").address
    return int(task.member("stack"))
