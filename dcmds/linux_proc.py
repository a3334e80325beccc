"""Kernel process dcmds: ::ps (crash's columns), ::ptree, ::pgrep, ::cpuinfo, and ::set -t.

They ask the target's Linux model (pmdb.os.linux.kernel.LinuxKernel) for tasks
and CPUs. Piped, they hand on task_struct addresses with their type, so
``::pgrep sleep | ::walk thread | ::findstack`` and ``::ps | ::print pid`` work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import number
from pmdb.errors import CommandError
from pmdb.os.linux.tasks.tasks import Task
from pmdb.output import Cell, Column, Dec, Flag, Hex, Indent
from pmdb.threads import Thread

if TYPE_CHECKING:
    from pmdb.os.linux.kernel import LinuxKernel
    from pmdb.types.model import Type

PS_HEADER = "      PID    PPID  CPU       TASK        ST  %MEM      VSZ      RSS  COMM"
# crash's ps columns; the header is crash's own line (its titles sit off their columns)
PS_COLUMNS = (Column("active", width=1), Column("pid", "PID", ">", 7), Column("ppid", "PPID", ">", 7),
              Column("cpu", "CPU", ">", 3), Column("task", "TASK", width=16, gap="  "),
              Column("state", "ST", width=2, gap="  "), Column("pct_mem", "%MEM", ">", 5),
              Column("vsz_kb", "VSZ", ">", 8), Column("rss_kb", "RSS", ">", 8),
              Column("comm", "COMM", gap="  "), Column("kernel_thread", text=False))
# ps -t: a thread under its group leader
THREAD_COLUMNS = (Column("thread", align=">", width=9), Column("pid", "PID", ">", 7, gap="  "),
                  Column("task", "TASK", width=16, gap="  "), Column("state", "ST", width=2, gap="  "),
                  Column("cpu", "CPU", gap=" cpu "), Column("comm", "COMM", gap="  "))
PTREE_COLUMNS = (Column("depth"), Column("task", "TASK", gap=""), Column("comm", "COMM", gap="  "),
                 Column("pid", "PID", gap=" [", suffix="]"))


def _hand_on(ctx: Context, tasks: Iterable[Task]) -> None:
    """Piped: each task's address goes on, typed struct task_struct."""
    typ = _task_type(ctx)
    for t in tasks:
        ctx.emit(t.address, typ)


def _task_type(ctx: Context) -> Type | None:
    return ctx.target.types.find("struct task_struct")


def _report_problems(ctx: Context, kernel: LinuxKernel) -> None:
    """Damage met while listing tasks: one line each, after the rows that could be read."""
    shown = ctx.state.setdefault("problems_shown", set())
    for problem in kernel.problems:
        if problem not in shown:
            shown.add(problem)
            ctx.out.error(problem)


def ps_row(task: Task, total_pages: int, page_kb: int, comm: str | None = None) -> list[Cell]:
    """One row of crash's ps: '>' marks a task running on a CPU, kernel threads in brackets."""
    name = comm if comm is not None else (f"[{task.comm}]" if task.kthread else task.comm)
    pct = task.rss * 100 / total_pages if total_pages else 0.0
    return [Flag(task.active, ">"), task.pid, task.ppid, task.cpu, Hex(task.address, 16), task.state,
            Dec(pct, 1), task.total_vm * page_kb, task.rss * page_kb, name, task.kthread]


def _select(kernel: LinuxKernel, ctx: Context, args: tuple[Any, ...], *, kernel_only: bool, user_only: bool,
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


_PS_BATCH = 256


@dcmd("ps", addr="optional", synopsis="list the tasks, as crash's ps does",
      example="::ps", usage="[-kuGtflpc] [pid | task | command ...]",
      opts={"k": "kernel_only", "u": "user_only", "G": "leaders", "t": "threads", "f": "full",
            "p": "parents", "c": "children", "l": "last_run", "C": "crash"})
def ps(ctx: Context, *args: Any, kernel_only: bool = False, user_only: bool = False,
       leaders: bool = False, threads: bool = False, full: bool = False, parents: bool = False,
       children: bool = False, last_run: bool = False, crash: bool = False) -> None:
    """Every task with crash's columns: PID, PPID, CPU, TASK (task_struct), ST (RU running,
    IN interruptible, UN uninterruptible, ID idle, ZO zombie, ST stopped, TR traced, DE dead,
    PA parked, WA waking), %MEM, VSZ and RSS in KB, and COMM; '>' marks the task on each CPU
    and kernel threads are in brackets. -k kernel threads only, -u user tasks only, -G one
    line per thread group, -t each group's threads indented under it (mdb), -f the full
    command line from the task's memory. Arguments pick tasks by pid, address or command.
    -p shows each task's ancestry from pid 0 down, -c its children, as crash does; -l
    each task's last run, newest first. Spelled ``ps`` (crash's word, -C), -t is crash's:
    each task's RUN TIME, START TIME, UTIME and STIME.
    Piped, the task addresses go on (typed struct task_struct)."""
    kernel = ctx.kernel
    if (crash and threads or last_run) and not ctx.piped:
        _crash_times(ctx, kernel, _select(kernel, ctx, args, kernel_only=kernel_only,
                                          user_only=user_only, leaders=leaders), last_run)
        return
    tasks = _select(kernel, ctx, args, kernel_only=kernel_only, user_only=user_only,
                    leaders=leaders or threads)
    if parents or children:
        _family(ctx, kernel, tasks, children)
        return
    if ctx.piped:
        _hand_on(ctx, tasks)
        return
    total, page_kb = kernel.total_pages(), kernel.page_size() // 1024
    header = PS_HEADER if not (ctx.in_loop and not ctx.first) else False
    # rows go out in batches (a fixed layout needs no other row to lay one out): a table call
    # per row was most of ::ps on 10,000 tasks; with -t each group's threads follow its row
    batch: list[list[Any]] = []
    for t in tasks:
        comm = kernel.arguments(t) if full and not t.kthread else None
        batch.append(ps_row(t, total, page_kb, comm))
        if threads or len(batch) >= _PS_BATCH:
            ctx.out.table(PS_COLUMNS, batch, header=header, fit=False)
            batch, header = [], False
        if threads:
            _thread_rows(ctx, kernel, t)
    if batch:
        ctx.out.table(PS_COLUMNS, batch, header=header, fit=False)
    _report_problems(ctx, kernel)


def _crash_times(ctx: Context, kernel: LinuxKernel, tasks: list[Task], last_run: bool) -> None:
    """crash's ps -l (last run) or ps -t (run times), from dcmds/linux_ps_crash.py."""
    from .linux_ps_crash import last_run_lines, task_time_lines

    lines = last_run_lines(kernel, tasks) if last_run else task_time_lines(kernel, tasks)
    for line in lines:
        ctx.out.line(line)


def task_header(t: Task) -> str:
    """crash's one-line task header (print_task_header)."""
    return f'PID: {t.pid:<7}  TASK: {t.address:<16x}  CPU: {t.cpu:<3}  COMMAND: "{t.comm}"'


def _family(ctx: Context, kernel: LinuxKernel, tasks: list[Task], children: bool) -> None:
    """crash's ps -p (each task's ancestors, one column deeper per generation) or -c (the
    task and, two columns in, every task whose parent it is)."""
    everyone = kernel.tasks()
    by_address = {t.address: t for t in everyone}
    for n, t in enumerate(tasks):
        lines = [""] if n else []
        if children:
            kids = sorted((k for k in everyone if k.parent == t.address and k.address != t.address
                           and not k.idle),
                          key=lambda k: k.pid)
            lines += [task_header(t)] + [f"  {task_header(k)}" for k in kids]
            if not kids:
                lines.append("  (no children)")
        else:
            chain = [t]
            while chain[-1].parent in by_address and chain[-1].parent != chain[-1].address \
                    and len(chain) <= len(everyone):
                chain.append(by_address[chain[-1].parent])
            lines += [" " * depth + task_header(a) for depth, a in enumerate(reversed(chain))]
        ctx.out.record({"task": Hex(t.address), "pid": t.pid}, text=lines)


def _thread_rows(ctx: Context, kernel: LinuxKernel, leader: Task) -> None:
    if leader.idle:
        return
    rows = []
    for addr in kernel.threads_of(leader.address)[1:]:
        t = kernel.task(addr)
        rows.append([Flag(True, "T"), t.pid, Hex(t.address, 16), t.state, t.cpu, t.comm])
    ctx.out.table(THREAD_COLUMNS, rows, header=False, fit=False)


@dcmd("ptree", addr="optional", synopsis="print the process tree", example="::ptree",
      usage="[task | pid]")
def ptree(ctx: Context) -> None:
    """The thread-group leaders as a tree of parents and children (real_parent links),
    each line the task_struct address and command with the pid; with an address, only
    the subtree of that task. Threads other than the leaders are left out."""
    kernel = ctx.kernel
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
    rows: list[list[Cell]] = []
    while stack:
        t, depth = stack.pop()
        if t.address in seen:
            continue        # a parent loop in damaged data: print each task once
        seen.add(t.address)
        rows.append([Indent(depth), Hex(t.address, 16), t.comm, t.pid])
        stack.extend((c, depth + 1) for c in reversed(children.get(t.address, [])))
    ctx.out.table(PTREE_COLUMNS, rows, header=False, fit=False)
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
    kernel = ctx.kernel
    try:
        rx = re.compile(str(pattern))
    except re.error as err:
        raise CommandError(f"pgrep: bad pattern {pattern!r}: {err}") from None
    match = rx.fullmatch if exact else rx.search
    tasks = [t for t in kernel.tasks() if match(t.comm)]
    if ctx.piped:
        _hand_on(ctx, tasks)
        return
    total, page_kb = kernel.total_pages(), kernel.page_size() // 1024
    ctx.out.table(PS_COLUMNS, [ps_row(t, total, page_kb) for t in tasks], header=PS_HEADER, fit=False)


CPU_COLUMNS = (Column("cpu", "ID", ">"), Column("runqueue", "RUNQUEUE"), Column("state", "STATE"),
               Column("nr_running", "NRUN", ">"), Column("thread", "THREAD"), Column("pid", "PID", ">"),
               Column("comm", "COMM"))


@dcmd("cpuinfo", addr="optional", synopsis="print each CPU: runqueue, state, running task",
      example="::cpuinfo", usage="[cpu]")
def cpuinfo(ctx: Context) -> None:
    """One line per CPU (or only the CPU given as the address): its number, its runqueue
    (struct rq), whether it was online when the dump was taken, how many tasks its runqueue
    held, and the task it was running (address, pid, command). Piped, the runqueues go on."""
    kernel = ctx.kernel
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
    rows: list[list[Cell]] = []
    for c in cpus:
        cur = kernel.task(c.curr) if c.curr else None
        rows.append([c.index, Hex(c.runqueue, 16) if c.runqueue else None,
                     "online" if c.online else "offline", c.nr_running,
                     Hex(c.curr, 16) if c.curr else None, cur.pid if cur else None,
                     cur.comm if cur else None])
    ctx.out.table(CPU_COLUMNS, rows)


@dcmd("set", addr="none", synopsis="set the current thread (task) for $c, $r and ::regs",
      example="::set -t 0t102", usage="-t task|pid | -c [pid|task]", opts={"t:": "thread", "c": "crash"})
def set_cmd(ctx: Context, *words: Any, thread: Any = None, crash: bool = False) -> None:
    """-t picks the current thread: on a kernel dump a task_struct address or a pid (0t for
    decimal), on a user core a thread id; later $c, $r and ::regs without an address use it.
    -c reads the word as crash's ``set`` does (crash's spelling passes it): a short run of
    digits is a decimal pid, a long one a task address."""
    if words and not crash:
        raise CommandError("set: the thread goes after -t (::set -t 0t102), or use crash's set 102")
    if len(words) > 1:
        raise CommandError("set: one pid or task at a time")
    if words:
        thread = ctx.value(str(words[0]), crash=True, what="pid or task")
    if thread is None:
        cur = ctx.target.current_thread
        if cur is None:
            raise CommandError("the target has no threads")
        _current(ctx, cur)
        return
    ident = ctx.value(thread, what="thread, task or pid")
    if ctx.is_kernel:
        ident = ctx.kernel.find_task(ident).address
    _current(ctx, ctx.target.set_current_thread(ident))


def _current(ctx: Context, t: Thread) -> None:
    """``current thread: id (address) name`` (a record in JSON)."""
    ctx.out.record({"thread": t.id, "address": Hex(t.address) if t.address else None, "name": t.name},
                   text=[f"current thread: {t.id}" + (f" ({t.address:x})" if t.address else "")
                         + (f" {t.name}" if t.name else "")])


@dcmd("context", addr="optional", synopsis="set the current process context (mdb's ::context)",
      example="::context 0t102", usage="[pid | task]")
def context_cmd(ctx: Context, *words: Any) -> None:
    """mdb's ::context: make a process current, as ``::set -t`` does; user addresses are
    then read through its page tables (``0x4393eb/X``). ``addr::context`` takes a
    task_struct; with nothing, the current thread is named."""
    if len(words) > 1:
        raise CommandError("context: one pid or task at a time")
    if ctx.addr is not None:
        set_cmd(ctx, thread=ctx.addr)
    else:
        set_cmd(ctx, thread=words[0] if words else None)
