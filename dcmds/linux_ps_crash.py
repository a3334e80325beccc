"""crash's ``ps -t`` (each task's run time) and ``ps -l`` (each task's last run), in
crash's layout (show_task_times and show_last_run in crash's task.c).

mdb's ``::ps -t`` lists threads; the crash word ``ps`` is rewritten to ``::ps -C``
(pmdb.language.crash_aliases), and -C gives -t crash's meaning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pmdb.errors import CommandError, PmdbError
from pmdb.os.linux import sysinfo
from pmdb.os.linux.tasks.tasks import Task
from pmdb.types.value import Object

_NS = 1_000_000_000


def _task_object(kernel: Any, task: Task) -> Object:
    return Object(kernel.mem, kernel.types.lookup("struct task_struct"), task.address)


def task_time_lines(kernel: Any, tasks: Sequence[Task]) -> list[str]:
    """crash's run-time block per task: RUN TIME (whole seconds of uptime since the
    task's start second, as crash rounds it), START TIME, UTIME and STIME in ns as the
    task_struct holds them (u64 nanoseconds since Linux 3.17), oldest first as crash
    sorts them, a blank line between tasks."""
    from .linux_proc import task_header

    kv = kernel.vars()
    hz = sysinfo.hz(kv)
    initial = (-300 * hz) & 0xFFFFFFFF                   # INITIAL_JIFFIES
    uptime = (kv.mem.u64(kv.need("jiffies_64")) - initial) & (1 << 64) - 1
    rows: list[tuple[Task, int, int, int]] = []
    for task in tasks:
        obj = _task_object(kernel, task)
        start, utime, stime = (int(obj.member(m)) for m in ("start_time", "utime", "stime"))
        rows.append((task, start, utime, stime))
    rows.sort(key=lambda row: row[1])                     # stable: ties keep the task order
    lines: list[str] = []
    for n, (task, start, utime, stime) in enumerate(rows):
        run = uptime - start // _NS * hz                  # crash: start_time / 1e9 * HZ
        lines += [""] if n else []
        lines += [task_header(task), f"    RUN TIME: {_run_time(run, hz)}",
                  f"  START TIME: {start}", f"       UTIME: {utime}", f"       STIME: {stime}"]
    return lines


def _run_time(ticks: int, hz: int) -> str:
    """crash's convert_time: hh:mm:ss, with days in front when there are any."""
    if ticks < 0:
        return "(negative)"
    return sysinfo.format_uptime(ticks // hz)


def last_run_lines(kernel: Any, tasks: Sequence[Task]) -> list[str]:
    """crash's ``ps -l``: ``[last_arrival] [ST]  header`` per task, the most recently run
    first (sched_info.last_arrival, ns of the task's CPU clock), the stamps right-aligned
    to the widest."""
    stamps = []
    for task in tasks:
        try:
            value = int(_task_object(kernel, task).member("sched_info").member("last_arrival"))
        except PmdbError as err:
            raise CommandError(f"ps: -l needs task_struct.sched_info.last_arrival: {err}") from None
        stamps.append((value, task))
    stamps.sort(key=lambda pair: -pair[0])                # stable: ties keep the task order
    from .linux_proc import task_header

    width = max((len(str(v)) for v, _ in stamps), default=1)
    return [f"[{v:>{width}}] [{t.state}]  {task_header(t)}" for v, t in stamps]
