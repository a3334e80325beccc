"""::stacks on a user core: the threads grouped by identical stack, most common first.

The kernel's ::stacks (linux_stack.py) groups tasks by state and frames; a user core
has no thread states, so its threads are grouped by the functions on their stacks
alone (a frame whose offset differs within a group is shown by its name alone). The
frames are named as $c names them: a caller by its call (pc - 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pmdb.commands import Context
from pmdb.output import Column
from pmdb.threads import Thread


@dataclass
class UserGroup:
    """Threads whose stacks are the same: one row of ::stacks on a user core."""

    calls: list[str]                       # the first thread's frames, ``mod`sym+off``
    names: tuple[str, ...]                 # the frames' function names, for -c
    threads: list[Thread] = field(default_factory=list)
    note: str = ""


USER_STACKS_COLUMNS = (Column("thread", "THREAD"), Column("count", "COUNT", ">"),
                       Column("threads", "THREADS"), Column("calls", "CALLS"), Column("note", "NOTE"))


def user_stacks(ctx: Context, caller: str | None, module: str | None, every: bool) -> None:
    """The user-core half of ::stacks (see the module docstring); piped, the thread ids
    of the groups shown go on."""
    target = ctx.target
    chosen = [target.thread_by_id(ctx.addr)] if ctx.addr is not None else list(target.threads())
    groups = [g for g in group_user_stacks(ctx, chosen) if _wanted(g, caller, module)]
    if ctx.piped:
        for g in groups:
            for t in g.threads:
                ctx.emit(t.id)
        return
    lines = [f"{'THREAD':<10} {'COUNT':>5}"]
    for n, g in enumerate(groups):
        lines += [""] if n else []
        lines.append(f"{g.threads[0].id:<10} {len(g.threads):>5}")
        lines += [str(t.id) for t in g.threads[1:]] if every else []
        lines += [f"{'':10} {call}" for call in g.calls]
        if g.note and not g.note.startswith("end of"):
            lines.append(f"{'':10} (stopped: {g.note})")
    rows = [[g.threads[0].id, len(g.threads), [t.id for t in g.threads], g.calls, g.note or None]
            for g in groups]
    ctx.out.table(USER_STACKS_COLUMNS, rows, text=lines)


def group_user_stacks(ctx: Context, threads: list[Thread]) -> list[UserGroup]:
    """Groups of threads whose frames name the same functions, most common first, then in
    thread order."""
    target = ctx.target
    groups: dict[tuple[str, ...], UserGroup] = {}
    for thread in threads:
        frames = target.stack(thread)
        calls = [target.describe(f.pc, call_site=f.call_site) for f in frames]
        names = tuple(c.split("+")[0] for c in calls)
        group = groups.get(names)
        if group is None:
            note = frames[-1].note if frames else "no stack"
            group = groups[names] = UserGroup(calls, tuple(n.rpartition("`")[2] for n in names), note=note)
        else:
            group.calls = [c if c == o else c.split("+")[0] for c, o in zip(group.calls, calls, strict=True)]
        group.threads.append(thread)
    return sorted(groups.values(), key=lambda g: -len(g.threads))


def _wanted(group: UserGroup, caller: str | None, module: str | None) -> bool:
    if caller is not None and str(caller).rpartition("`")[2] not in group.names:
        return False
    if module is not None:
        mods = {c.partition("`")[0] if "`" in c else "a.out" for c in group.calls}
        return str(module) in mods or any(m.split(".so")[0] == str(module) for m in mods)
    return True
