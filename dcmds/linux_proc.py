"""Kernel process dcmds: ::ps (crash's columns), ::ptree, ::pgrep, ::cpuinfo, and ::set -t.

They ask the target's Linux model (pmdb.os.linux.kernel.LinuxKernel) for tasks
and CPUs. Piped, they hand on task_struct addresses with their type, so
``::pgrep sleep | ::walk thread | ::findstack`` and ``::ps | ::print pid`` work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import number
from pmdb.errors import CommandError
from pmdb.os.linux.tasks.tasks import Task

PS_HEADER = "      PID    PPID  CPU       TASK        ST  %MEM      VSZ      RSS  COMM"


def kernel_of(ctx: Context) -> Any:
    """The target's LinuxKernel; a clear error on other targets."""
    target = ctx.target
    if target.kind != "vmcore" or not hasattr(target.os, "tasks"):
        raise CommandError("this dcmd needs a Linux kernel dump (the target is a "
                           f"{target.kind})")
    return target.os


def _hand_on(ctx: Context, tasks: Iterable[Task]) -> None:
    """Piped: each task's address goes on, typed struct task_struct."""
    typ = _task_type(ctx)
    for t in tasks:
        ctx.emit(t.address, typ)


def _task_type(ctx: Context) -> Any:
    return ctx.target.types.find("struct task_struct")


def _report_problems(ctx: Context, kernel: Any) -> None:
    """Damage met while listing tasks: one line each, after the rows that could be read."""
    shown = ctx.state.setdefault("problems_shown", set())
    for problem in kernel.problems:
        if problem not in shown:
            shown.add(problem)
            ctx.out.error(problem)


def ps_row(task: Task, total_pages: int, page_kb: int, comm: str | None = None) -> str:
    """One line of crash's ps: '>' marks a task running on a CPU, kernel threads in brackets."""
    name = comm if comm is not None else (f"[{task.comm}]" if task.kthread else task.comm)
    pct = task.rss * 100 / total_pages if total_pages else 0.0
    return (f"{'>' if task.active else ' '} {task.pid:>7} {task.ppid:>7} {task.cpu:>3}  "
            f"{task.address:016x}  {task.state:<2} {pct:5.1f} {task.total_vm * page_kb:>8} "
            f"{task.rss * page_kb:>8}  {name}")


def _select(kernel: Any, ctx: Context, args: tuple[Any, ...], *, kernel_only: bool, user_only: bool,
            leaders: bool) -> list[Task]:
    tasks: list[Task] = list(kernel.tasks())
    if ctx.addr is not None:
        tasks = [kernel.find_task(ctx.addr)]
    if kernel_only:
        tasks = [t for t in tasks if t.kthread]
    if user_only:
        tasks = [t for t in tasks if not t.kthread]
    if leaders:
        tasks = [t for t in tasks if t.idle or t.leader in (0, t.address)]
    if args:
        tasks = [t for t in tasks if any(_matches(t, a) for a in args)]
    return tasks


def _matches(task: Task, arg: Any) -> bool:
    """crash's ps arguments: a pid (decimal, as crash reads it; 0t and 0x work too), a
    task_struct address (hex), or a command name."""
    if isinstance(arg, int):
        return arg in (task.address, task.pid)
    text = str(arg)
    value = number(text, crash=True)
    if value is not None:
        return value in (task.pid, task.address)
    return task.comm == text


@dcmd("ps", addr="optional", synopsis="list the tasks, as crash's ps does",
      example="::ps", usage="[-kuGtf] [pid | task | command ...]",
      opts={"k": "kernel_only", "u": "user_only", "G": "leaders", "t": "threads", "f": "full"})
def ps(ctx: Context, *args: Any, kernel_only: bool = False, user_only: bool = False,
       leaders: bool = False, threads: bool = False, full: bool = False) -> None:
    """Every task with crash's columns: PID, PPID, CPU, TASK (task_struct), ST (RU running,
    IN interruptible, UN uninterruptible, ID idle, ZO zombie, ST stopped, TR traced, DE dead,
    PA parked, WA waking), %MEM, VSZ and RSS in KB, and COMM; '>' marks the task on each CPU
    and kernel threads are in brackets. -k kernel threads only, -u user tasks only, -G one
    line per thread group, -t each group's threads indented under it (mdb), -f the full
    command line from the task's memory. Arguments pick tasks by pid, address or command.
    Piped, the task addresses go on (typed struct task_struct)."""
    kernel = kernel_of(ctx)
    tasks = _select(kernel, ctx, args, kernel_only=kernel_only, user_only=user_only,
                    leaders=leaders or threads)
    if ctx.piped:
        _hand_on(ctx, tasks)
        return
    total = kernel.total_pages()
    page_kb = int(kernel.km.info.raw.get("PAGESIZE", "4096")) // 1024
    if ctx.out.json_mode:
        for t in tasks:
            ctx.out.record(active=t.active, pid=t.pid, ppid=t.ppid, cpu=t.cpu, task=f"{t.address:#x}",
                           state=t.state, pct_mem=round(t.rss * 100 / total, 1) if total else 0.0,
                           vsz_kb=t.total_vm * page_kb, rss_kb=t.rss * page_kb, comm=t.comm,
                           kernel_thread=t.kthread)
        _report_problems(ctx, kernel)
        return
    if not (ctx.in_loop and not ctx.first):
        ctx.out.line(PS_HEADER)
    for t in tasks:
        comm = kernel.arguments(t) if full and not t.kthread else None
        ctx.out.line(ps_row(t, total, page_kb, comm))
        if threads:
            _thread_lines(ctx, kernel, t)
    _report_problems(ctx, kernel)


def _thread_lines(ctx: Context, kernel: Any, leader: Task) -> None:
    if leader.idle:
        return
    for addr in kernel.threads_of(leader.address)[1:]:
        t = kernel.task(addr)
        ctx.out.line(f"        T  {t.pid:>7}  {t.address:016x}  {t.state:<2} cpu {t.cpu}  {t.comm}")


@dcmd("ptree", addr="optional", synopsis="print the process tree", example="::ptree",
      usage="[task | pid]")
def ptree(ctx: Context) -> None:
    """The thread-group leaders as a tree of parents and children (real_parent links),
    each line the task_struct address and command with the pid; with an address, only
    the subtree of that task. Threads other than the leaders are left out."""
    kernel = kernel_of(ctx)
    tasks = [t for t in kernel.tasks() if t.idle or t.leader in (0, t.address)]
    known = {t.address for t in tasks}
    children: dict[int, list[Task]] = {}
    roots: list[Task] = []
    for t in tasks:
        if t.idle or t.parent not in known or t.parent == t.address:
            roots.append(t)
        else:
            children.setdefault(t.parent, []).append(t)
    if ctx.addr is not None:
        roots = [kernel.find_task(ctx.addr)]
    if ctx.piped:
        _emit_tree(ctx, roots, children)
        return
    stack: list[tuple[Task, int]] = [(r, 0) for r in reversed(roots)]
    seen: set[int] = set()
    while stack:
        t, depth = stack.pop()
        if t.address in seen:
            continue        # a parent loop in damaged data: print each task once
        seen.add(t.address)
        ctx.out.line(f"{'    ' * depth}{t.address:016x}  {t.comm} [{t.pid}]")
        stack.extend((c, depth + 1) for c in reversed(children.get(t.address, [])))
    _report_problems(ctx, kernel)


def _emit_tree(ctx: Context, roots: list[Task], children: dict[int, list[Task]]) -> None:
    typ = _task_type(ctx)
    todo, seen = list(reversed(roots)), set()
    while todo:
        t = todo.pop()
        if t.address not in seen:
            seen.add(t.address)
            ctx.emit(t.address, typ)
            todo.extend(reversed(children.get(t.address, [])))


@dcmd("pgrep", addr="none", synopsis="find tasks whose command matches a pattern",
      example="::pgrep sleep | ::walk thread | ::findstack", usage="[-x] pattern",
      opts={"x": "exact"})
def pgrep(ctx: Context, pattern: Any, exact: bool = False) -> None:
    """Tasks whose command (comm) matches the regular expression (the whole name with -x),
    printed as ::ps rows; piped, their task_struct addresses go on."""
    kernel = kernel_of(ctx)
    try:
        rx = re.compile(str(pattern))
    except re.error as err:
        raise CommandError(f"pgrep: bad pattern {pattern!r}: {err}") from None
    match = rx.fullmatch if exact else rx.search
    tasks = [t for t in kernel.tasks() if match(t.comm)]
    if ctx.piped:
        _hand_on(ctx, tasks)
        return
    total = kernel.total_pages()
    ctx.out.line(PS_HEADER)
    for t in tasks:
        ctx.out.line(ps_row(t, total, 4))


@dcmd("cpuinfo", addr="optional", synopsis="print each CPU: runqueue, state, running task",
      example="::cpuinfo", usage="[cpu]")
def cpuinfo(ctx: Context) -> None:
    """One line per CPU (or only the CPU given as the address): its number, its runqueue
    (struct rq), whether it was online when the dump was taken, how many tasks its runqueue
    held, and the task it was running (address, pid, command). Piped, the runqueues go on."""
    kernel = kernel_of(ctx)
    cpus = kernel.cpus()
    if ctx.addr is not None:
        cpus = [c for c in cpus if c.index == ctx.addr]
        if not cpus:
            raise CommandError(f"no cpu {ctx.addr}")
    if ctx.piped:
        typ = ctx.target.types.find("struct rq")
        for c in cpus:
            if c.runqueue:
                ctx.emit(c.runqueue, typ)
        return
    rows = []
    for c in cpus:
        cur = kernel.task(c.curr) if c.curr else None
        rows.append([c.index, f"{c.runqueue:016x}" if c.runqueue else "?",
                     "online" if c.online else "offline", c.nr_running,
                     f"{c.curr:016x}" if c.curr else "?", cur.pid if cur else "",
                     cur.comm if cur else ""])
    ctx.out.table(["ID", "RUNQUEUE", "STATE", "NRUN", "THREAD", "PID", "COMM"], rows, align="rllrlr")


@dcmd("set", addr="none", synopsis="set the current thread (task) for $c, $r and ::regs",
      example="::set -t 0t102", usage="-t task|pid", opts={"t:": "thread"})
def set_cmd(ctx: Context, thread: Any = None) -> None:
    """-t picks the current thread: on a kernel dump a task_struct address or a pid (0t for
    decimal), on a user core a thread id; later $c, $r and ::regs without an address use it."""
    if thread is None:
        cur = ctx.target.current_thread
        if cur is None:
            raise CommandError("the target has no threads")
        ctx.out.line(f"current thread: {cur.id}" + (f" ({cur.address:x})" if cur.address else "")
                     + (f" {cur.name}" if cur.name else ""))
        return
    ident = ctx.value(thread, what="thread, task or pid")
    target = ctx.target
    if target.kind == "vmcore" and hasattr(target.os, "find_task"):
        ident = target.os.find_task(ident).address
    t = target.set_current_thread(ident)
    ctx.out.line(f"current thread: {t.id}" + (f" ({t.address:x})" if t.address else "")
                 + (f" {t.name}" if t.name else ""))
