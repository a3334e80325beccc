"""Kernel stack dcmds over many tasks: crash's ``foreach bt``, mdb's ::threadlist and ::stacks.

Each task's stack comes from the target's Linux model (``target.stack(thread)``,
the ORC unwinder); the text is linux_stack_text's. A task whose stack
cannot be followed to its end shows what was found and one line saying why;
the next task goes on. Piped, these dcmds hand on task_struct addresses.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import Quoted, number, parse_options
from pmdb.errors import CommandError
from pmdb.os.linux.tasks.tasks import Task
from pmdb.output import Cell, Column, Hex
from pmdb.threads import Thread
from pmdb.types.model import Type
from pmdb.unwind.frame import Frame

from .linux_eframes import bt_eframes
from .linux_proc import task_header
from .linux_stack_text import (
    bt_records,
    bt_tasks,
    bt_text_scan,
    findstack_text,
    frame_name,
    kernel_frames,
    task_numbers,
)
from .source_lines import source_lines
from .user_stacks import user_stacks

_KINDS = {"user", "kernel", "gleader", "active"}
_STATES = {"RU", "IN", "UN", "ST", "TR", "ZO", "DE", "PA", "WA", "NE", "WK", "ID"}
# the frames a kernel thread starts in, below the function it runs (mdb shows that function)
_THREAD_ENTRIES = ("kthread", "ret_from_fork")


def _task_type(ctx: Context) -> Type | None:
    return ctx.target.types.find("struct task_struct")


# -- foreach bt ----------------------------------------------------------------------------

@dcmd("foreach", addr="none",
      synopsis="crash's foreach: run a command (bt, ps, task, ...) for every task or the tasks named",
      example="foreach UN bt", usage="[pid | task | command | state | user | kernel | active ...] "
                                     "command [flags] [args]")
def foreach(ctx: Context, *args: Any) -> None:
    """crash's ``foreach [TASKS] COMMAND [ARGS]``: the command for each task, in crash's
    order (the idle tasks, then by pid), a blank line between tasks. Words before the
    command choose tasks: a pid (decimal), a task_struct address (hex), a command name (a
    glob: ``foreach sleep bt``; quoted, a regular expression searched for in the name:
    ``foreach 'kworker.*' ps``; after a ``\\``, a name that is also a command's), a state
    (RU, IN, UN, ID ...), ``user``, ``kernel``, ``gleader`` (user thread-group leaders) or
    ``active`` (the task on each CPU); a flag among them goes to the command, as in crash. ``bt [-f]`` and ``ps`` run once over all the tasks
    (ps prints one header); any other command is given each task's address as its last
    argument (``foreach UN task -R pid``)."""
    from pmdb.language.crash_aliases import CRASH_ALIASES

    kernel = ctx.kernel
    words = [a if isinstance(a, str) else str(a) for a in args]   # a Quoted word stays one
    at = next((i for i, w in enumerate(words) if not isinstance(w, Quoted) and not w.startswith("\\")
               and (w in CRASH_ALIASES or ctx.registry.has_dcmd(w))), None)
    if at is None:
        raise CommandError("foreach: no command to run (foreach [tasks] bt, ps, task ...)")
    command = words[at]
    flags = [w for w in words[:at] if w.startswith("-")]     # crash hands these to the command
    command_args = flags + words[at + 1:]
    selectors = [_selector(w) for w in words[:at] if not w.startswith("-")]
    every = list(kernel.tasks())
    tasks = [t for t in every if not selectors or any(_selects(t, s) for s in selectors)]
    for s in selectors:      # as crash: a pid or name no task has is named; a state is not
        if isinstance(s, str) and s not in _STATES and s.lower() not in _KINDS \
                and not any(_selects(t, s) for t in tasks):
            ctx.out.error(f'foreach: unknown argument: "{s}"')
    if selectors and not tasks:
        return
    name = CRASH_ALIASES.get(command, command).split()[0]
    if name == "bt":
        _foreach_bt(ctx, command_args, [t.address for t in tasks])
        return
    if name == "ps":
        ctx.invoke("ps", ["-C", *command_args, *(f"{t.address:x}" for t in tasks)])   # crash's ps
        return
    if name == "vtop":
        _foreach_vtop(ctx, command_args, tasks)
        return
    for n, t in enumerate(tasks):
        if n:
            ctx.out.line("")
        ctx.invoke(name, [*command_args, f"{t.address:x}"])


def _foreach_vtop(ctx: Context, args: Sequence[str], tasks: list[Task]) -> None:
    """crash's vtop [-u | -k] ADDR... in each task's context, under the task's header."""
    from pmdb.os.linux.mm.kernel_memory import kernel_parts

    from .linux_mem import crash_vtop

    positional, opts = parse_options("vtop", {"u": "user", "k": "kernel"}, args, "[-u | -k] addr ...")
    addrs = [ctx.value(w, what="address") for w in positional]
    parts = kernel_parts(ctx.target)
    if not addrs or parts is None:
        raise CommandError("foreach: vtop needs an address and a kernel dump")
    headed = [False]
    for n, t in enumerate(tasks):
        if n:
            ctx.out.line("")
        ctx.out.line(task_header(t))
        crash_vtop(ctx, parts, addrs, t, user=opts.get("user", False), kernel=opts.get("kernel", False),
                   headed=headed, spaced=False)


def _foreach_bt(ctx: Context, args: Sequence[str], tasks: list[int]) -> None:
    """foreach's bt: -f, -e, -l, -s and -x as bt has them (one letter a word or run together)."""
    letters = "".join(w[1:] for w in args if w.startswith("-"))
    unknown = [w for w in args if not w.startswith("-")] + sorted(set(letters) - set("felsx"))
    if unknown:
        raise CommandError(f"foreach: bt takes only -f, -e, -l, -s, -x here, not {' '.join(unknown)!r}")
    offsets = ("hex" if "x" in letters else "dec") if "s" in letters else ""
    if "e" in letters:
        for n, task in enumerate(tasks):
            for line in ([""] if n else []) + bt_eframes(ctx.target, task):
                ctx.out.line(line)
        return
    print_bts(ctx, tasks, full="f" in letters, offsets=offsets, lines="l" in letters)


def _selector(word: str) -> str | re.Pattern[str]:
    """A selector word as _selects reads it: a quoted word is a regular expression (crash's
    POSIX extended; Python's is close enough for names), ``\\name`` the name alone."""
    if isinstance(word, Quoted):
        try:
            return re.compile(word)
        except re.error as err:
            raise CommandError(f"foreach: invalid regular expression: {word} ({err})") from None
    return word


def _selects(task: Task, word: str | re.Pattern[str]) -> bool:
    """crash's foreach task selectors."""
    if isinstance(word, re.Pattern):
        return word.search(task.comm) is not None
    if word.startswith("\\"):
        return fnmatch.fnmatchcase(task.comm, word[1:])
    low = word.lower()
    if low == "user":
        return not task.kthread
    if low == "kernel":
        return task.kthread
    if low == "gleader":
        return not task.kthread and task.pid == task.tgid
    if low == "active":
        return task.active
    if word in _STATES:
        return bool(task.state == word)
    value = number(word, crash=True)   # a pid (decimal) or a task address
    if value is not None:
        return value in (task.pid, task.address)
    return fnmatch.fnmatchcase(task.comm, word)


# -- crash's bt over a kernel target ----------------------------------------------------

def bt_command(ctx: Context, args: Sequence[str], *, active: bool, full: bool, text: bool = False,
               offsets: str = "", eframes: bool = False, lines: bool = False) -> None:
    """``bt [-a] [-f] [-t] [-s [-x]] [pid | task ...]`` (dcmds/stack.py's bt on a kernel
    target); ``offsets``: "dec" for -s, "hex" for -s -x (crash: -x alone changes nothing)."""
    target = ctx.target
    kernel: Any = target.os
    picks: list[int] = []
    if active:
        picks = [c.curr for c in kernel.cpus() if c.curr]
    elif args:
        for word in args:
            try:
                picks += task_numbers(kernel, word)
            except CommandError as err:
                ctx.out.error(f"bt: {err}")
    elif ctx.addr is not None:
        picks = [kernel.find_task(ctx.addr).address]
    else:
        cur = target.current_thread
        if cur is None or cur.address is None:
            hint = " ($c and ::findstack unwind the CPU threads)" if cur is not None else ""
            raise CommandError(f"bt: no current task{hint}")
        picks = [cur.address]
    if text or eframes:
        scan = bt_eframes if eframes else bt_text_scan
        for n, task in enumerate(picks):
            for line in ([""] if n else []) + scan(ctx.target, task):
                if line.startswith("bt: "):
                    ctx.out.error(line)
                else:
                    ctx.out.line(line)
        return
    print_bts(ctx, picks, full=full, offsets=offsets, lines=lines)


def print_bts(ctx: Context, tasks: Sequence[int], *, full: bool = False, offsets: str = "",
              lines: bool = False) -> None:
    """crash's bt of each task, a blank line between tasks; piped, the tasks go on."""
    if ctx.piped:
        for t in tasks:
            ctx.emit(t, ctx.target.types.find("struct task_struct"))
        return
    if ctx.out.json_mode:
        for record in bt_records(ctx.target, tasks):
            ctx.out.record(**record)
        return
    line_at = source_lines(ctx) if lines else None
    out = ctx.out
    for n, (_, shown) in enumerate(ctx.progressing(
            "bt", bt_tasks(ctx.target, tasks, full=full, offsets=offsets, line_at=line_at), len(tasks))):
        if n:
            out.line("")
        # a task's lines in one write (10,000 tasks: 160,000 lines); line by line near
        # limits.max_lines, so the output stops at exactly its last line
        room = out.max_lines is None or out.lines + len(shown) <= out.max_lines
        if room and not any(text.startswith("bt: ") for text in shown):
            ctx.out.write("".join(text + "\n" for text in shown))
            continue
        for text in shown:
            if text.startswith("bt: "):
                ctx.out.error(text)
            else:
                ctx.out.line(text)


# -- ::threadlist ---------------------------------------------------------------------------

THREADLIST_HEADER = f"{'ADDR':>16} {'PROC':>16} {'LWP':>8} CMD/LWPID"
THREADLIST_V_HEADER = f"{'ADDR':>16} {'PROC':>16} {'LWP':>8} ST CPU"
THREADLIST_COLUMNS = (Column("task", "ADDR", ">", 16), Column("proc", "PROC", ">", 16),
                      Column("pid", "LWP", ">", 8), Column("command", "CMD/LWPID"),
                      Column("state", "ST", text=False), Column("cpu", "CPU", text=False))


@dcmd("threadlist", addr="optional", opts={"v": "verbose"},
      synopsis="list the kernel's threads (tasks), mdb style", example="::threadlist -v",
      usage="[-v]")
def threadlist(ctx: Context, verbose: bool = False) -> None:
    """One line per task (or the task given as the address): ADDR (its task_struct), PROC
    (its thread-group leader's task_struct), LWP (its pid) and CMD/LWPID: ``comm/pid`` for
    a user task, the function a kernel thread runs (``rescuer_thread()``, ``idle()``) as
    mdb shows kernel threads by their start function. -v: ST and CPU instead, then
    ``PC:`` and ``CMD:``, and the task's stack as ::findstack shows it, without frame
    addresses. Piped, the task addresses go on."""
    kernel = ctx.kernel
    tasks = [kernel.find_task(ctx.addr)] if ctx.addr is not None else list(kernel.tasks())
    if ctx.piped:
        typ = _task_type(ctx)
        for t in tasks:
            ctx.emit(t.address, typ)
        return
    threads = {t.address: t for t in ctx.target.threads()}
    rows: list[list[Cell]] = []
    lines: list[str] = []
    for n, task in enumerate(tasks):
        thread = threads.get(task.address)
        frames = ctx.target.stack(thread) if thread is not None else []
        rows.append([Hex(task.address), Hex(task.leader or task.address), task.pid,
                     thread_command(ctx, task, frames), task.state, task.cpu])
        if verbose:
            lines += ([""] if n else []) + _verbose_lines(ctx, task, frames)
    if verbose:
        ctx.out.table(THREADLIST_COLUMNS, rows, text=[THREADLIST_V_HEADER, *lines])
    else:
        ctx.out.table(THREADLIST_COLUMNS, rows, header=THREADLIST_HEADER, fit=False)


def _verbose_lines(ctx: Context, task: Task, frames: list[Frame]) -> list[str]:
    """::threadlist -v: ADDR PROC LWP ST CPU, the PC and command, then the stack."""
    top = kernel_frames(frames)
    pc = frame_name(ctx.target.symbols.resolve, top[0])[0] if top else "?"
    stack = findstack_text(ctx.target.symbols.resolve, task.address, frames, addresses=False)
    return [f"{task.address:16x} {task.leader or task.address:16x} {task.pid:>8} {task.state:<2} {task.cpu:>3}",
            f"  PC: {pc}    CMD: {task.comm}", *("  " + line for line in stack)]


def thread_command(ctx: Context, task: Task, frames: list[Frame]) -> str:
    """CMD/LWPID: ``comm/pid`` for a user task; for a kernel thread the function it runs,
    the frame just below kthread() (or ret_from_fork, for kthreadd), ``idle()`` for the
    idle tasks; the command in brackets when the stack does not say."""
    if not task.kthread:
        return f"{task.comm}/{task.pid}"
    if task.idle:
        return "idle()"
    resolve = ctx.target.symbols.resolve
    shown = kernel_frames(frames)
    names = [frame_name(resolve, f)[0].split("+")[0] for f in shown]
    for entry in _THREAD_ENTRIES:
        if entry in names and names.index(entry) > 0:
            return f"{names[names.index(entry) - 1]}()"
    return f"[{task.comm}]"


# -- ::stacks --------------------------------------------------------------------------------

@dataclass
class _Group:
    """Tasks whose stacks are the same: one row of ::stacks."""

    state: str
    names: tuple[str, ...]
    calls: list[str]                    # the first task's frames, sym+off [module]
    tasks: list[Task] = field(default_factory=list)
    note: str = ""


@dcmd("stacks", addr="optional", opts={"c:": "caller", "m:": "module", "a": "every", "v": "verbose"},
      synopsis="group the tasks by identical stack, most common first",
      example="::stacks -c schedule_timeout", usage="[-av] [-c func] [-m module]")
def stacks(ctx: Context, caller: str | None = None, module: str | None = None, every: bool = False,
           verbose: bool = False) -> None:
    """Every task (or the one given as the address), grouped by state and by the
    functions on its stack (offsets may differ within a group: a frame whose offset
    differs is shown by its name alone), with the number of tasks in each group, the
    most common first. The THREAD column is one task of the group; -a lists every task
    of the group, -v every task with its pid and command. -c func: only stacks with a
    frame in func; -m module: only stacks with a frame in that module (``vmlinux`` for
    the kernel itself). Every task is counted in exactly one group. Piped, every task of
    the groups shown goes on. On a user core: the threads, grouped by their frames alone,
    their thread ids handed on when piped (user_stacks.py)."""
    if not ctx.is_kernel:
        user_stacks(ctx, caller, module, every or verbose)
        return
    groups = _filter(group_stacks(ctx), ctx, caller, module)
    if ctx.piped:
        typ = _task_type(ctx)
        for g in groups:
            for t in g.tasks:
                ctx.emit(t.address, typ)
        return
    lines = [f"{'THREAD':<16} {'STATE':<8} {'COUNT':>5}"]
    for n, g in enumerate(groups):
        lines += ([""] if n else []) + _group_lines(g, every, verbose)
    rows = [[Hex(g.tasks[0].address), g.state, len(g.tasks), [Hex(t.address) for t in g.tasks], g.calls,
             g.note or None] for g in groups]
    ctx.out.table(STACKS_COLUMNS, rows, text=lines)


STACKS_COLUMNS = (Column("thread", "THREAD"), Column("state", "STATE"), Column("count", "COUNT", ">"),
                  Column("tasks", "TASKS"), Column("calls", "CALLS"), Column("note", "NOTE"))


def _group_lines(g: _Group, every: bool, verbose: bool) -> list[str]:
    first = g.tasks[0]
    lines = [f"{first.address:016x} {g.state:<8} {len(g.tasks):>5}" + (f"  {first.pid} {first.comm}" if verbose else "")]
    for t in g.tasks[1:] if every or verbose else ():
        lines.append(f"{t.address:016x}" + (f" {'':8} {'':5}  {t.pid} {t.comm}" if verbose else ""))
    lines += [f"{'':16} {call}" for call in g.calls]
    if g.note:
        lines.append(f"{'':16} (stopped: {g.note})")
    return lines


def group_stacks(ctx: Context) -> list[_Group]:
    """The groups, most common first, then in task order."""
    kernel = ctx.kernel
    tasks = [kernel.find_task(ctx.addr)] if ctx.addr is not None else list(kernel.tasks())
    threads = {t.address: t for t in ctx.target.threads()}
    resolve = ctx.target.symbols.resolve
    names_of: dict[tuple[int, bool], tuple[str, str]] = {}     # 10,000 tasks, a few hundred pcs

    def name_of(f: Frame) -> tuple[str, str]:
        key = (f.pc, f.slot is None)
        hit = names_of.get(key)
        if hit is None:
            hit = names_of[key] = frame_name(resolve, f)
        return hit

    groups: dict[tuple[str, tuple[tuple[str, str], ...], bool], _Group] = {}
    for task in ctx.progressing(f"::stacks: unwinding the stacks of {len(tasks)} tasks", tasks):
        frames = _frames(ctx, threads.get(task.address))
        shown = kernel_frames(frames)
        named = [name_of(f) for f in shown]
        calls = [f"{name} [{mod}]" if mod else name for name, mod in named]
        names = tuple((name.split("+")[0], mod) for name, mod in named)
        note = frames[-1].note if frames else "no stack"
        key = (task.state, names, bool(note))
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(task.state, tuple(n for n, _ in names), calls, note=note)
        else:
            group.calls = [c if c == o else _name_only(c) for c, o in zip(group.calls, calls, strict=True)]
        group.tasks.append(task)
    return sorted(groups.values(), key=lambda g: -len(g.tasks))


def _frames(ctx: Context, thread: Thread | None) -> list[Frame]:
    return ctx.target.stack(thread) if thread is not None else []


def _name_only(call: str) -> str:
    """``sym+0x10 [mod]`` -> ``sym [mod]``: the offset is not the same across the group."""
    name, _, module = call.partition(" ")
    return name.split("+")[0] + (f" {module}" if module else "")


def _filter(groups: list[_Group], ctx: Context, caller: str | None, module: str | None) -> list[_Group]:
    out = groups
    if caller is not None:
        out = [g for g in out if str(caller) in g.names]
    if module is not None:
        wanted = str(module)
        out = [g for g in out if any(_in_module(c, wanted) for c in g.calls)]
    return out


def _in_module(call: str, module: str) -> bool:
    """A frame's module from its text (``sym+off [mod]``); the kernel proper is ``vmlinux``."""
    mod = call.rpartition(" [")[2].rstrip("]") if call.endswith("]") else "vmlinux"
    return mod == module
