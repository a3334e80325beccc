"""crash's ``runq``: each CPU's runqueue, its running task, and the tasks queued on its
real-time priority arrays and its CFS red-black tree, in crash's layout."""

from __future__ import annotations

from collections.abc import Iterator

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError, PmdbError
from pmdb.types.lists import ListLink, walk_list, walk_rbtree
from pmdb.types.value import Object

MAX_RT_PRIO = 100


@dcmd("runq", addr="none", synopsis="crash's runq: every CPU's runqueue and the tasks queued on it",
      example="runq", usage="[-c cpu]", opts={"c:": "cpu"})
def runq(ctx: Context, cpu: str | None = None) -> None:
    """For each CPU (or only -c CPU): its ``struct rq``, the task it was running, the RT
    priority array with the tasks queued at each priority, and the CFS tree with its tasks
    in vruntime order (a task group's queue shown as its tasks), as crash prints them.
    Tasks of the stop and deadline classes (migration/N) are counted in nr_running but,
    as in crash, not listed."""
    kernel = ctx.kernel
    cpus = kernel.cpus()
    if cpu is not None:
        wanted = ctx.value(cpu, radix=10, what="cpu")
        cpus = [c for c in cpus if c.index == wanted]
        if not cpus:
            raise CommandError(f"runq: no cpu {wanted}")
    rq_type = kernel.types.lookup("struct rq")
    for n, c in enumerate(cpus):
        if not c.runqueue:
            continue
        lines = [""] if n else []
        rq = Object(ctx.target.memory, rq_type, c.runqueue)
        lines.append(f"CPU {c.index} RUNQUEUE: {c.runqueue:x}")
        if c.curr:
            lines.append("  CURRENT: " + _task_line(ctx, c.curr))
        rt = rq.member("rt").member("active")
        lines.append(f"  RT PRIO_ARRAY: {rt.address:x}")
        lines += _queued(ctx, list(_rt_tasks(ctx, rt)))
        cfs = rq.member("cfs").member("tasks_timeline")
        lines.append(f"  CFS RB_ROOT: {cfs.address:x}")
        lines += _queued(ctx, list(_cfs_tasks(ctx, rq.member("cfs"), 0)))
        ctx.out.record({"cpu": c.index, "runqueue": c.runqueue}, text=lines)


def _task_line(ctx: Context, task: int) -> str:
    t = ctx.kernel.task(task)
    return f'PID: {t.pid:<5}  TASK: {task:x}  COMMAND: "{t.comm}"'


def _queued(ctx: Context, tasks: list[tuple[int, int]]) -> list[str]:
    if not tasks:
        return ["     [no tasks queued]"]
    return [f"     [{prio:3d}] " + _task_line(ctx, task) for prio, task in tasks]


def _container(obj_addr: int, ctx: Context, spelling: str, member: str) -> int:
    found = ctx.kernel.types.lookup(spelling).find_member(member)
    if found is None:
        raise CommandError(f"{spelling} has no member {member}")
    return obj_addr - found[1] // 8


def _task_prio(ctx: Context, task: int) -> int:
    return int(Object(ctx.target.memory, ctx.kernel.types.lookup("struct task_struct"), task).member("prio"))


def _rt_tasks(ctx: Context, active: Object) -> Iterator[tuple[int, int]]:
    """(prio, task) of every task on an rt_prio_array, highest priority first."""
    queues = active.member("queue")
    run_list = ctx.kernel.types.lookup("struct sched_rt_entity").find_member("run_list")
    assert run_list is not None
    link = ListLink(run_list[1] // 8, run_list[1] // 8)
    for prio in range(min(queues.type.strip().count or 0, MAX_RT_PRIO)):
        head = queues[prio].address
        for rt_se in walk_list(ctx.target.memory, head, link, head=head):
            yield prio, _container(rt_se, ctx, "struct task_struct", "rt")


def _cfs_tasks(ctx: Context, cfs_rq: Object, depth: int) -> Iterator[tuple[int, int]]:
    """(prio, task) of every task in a cfs_rq's tree in order; a group's entity is its queue."""
    if depth > 8:
        raise PmdbError("runq: task groups nested deeper than 8")
    se_type = ctx.kernel.types.lookup("struct sched_entity")
    run_node = se_type.find_member("run_node")
    node_type = ctx.kernel.types.lookup("struct rb_node")
    left, right = (node_type.find_member(m) for m in ("rb_left", "rb_right"))
    assert run_node is not None and left is not None and right is not None
    root = int(cfs_rq.member("tasks_timeline").member("rb_root").member("rb_node"))
    has_my_q = se_type.find_member("my_q") is not None
    for node in walk_rbtree(ctx.target.memory, root, left[1] // 8, right[1] // 8):
        se = Object(ctx.target.memory, se_type, node - run_node[1] // 8)
        group = int(se.member("my_q")) if has_my_q else 0
        if group:
            queue = Object(ctx.target.memory, ctx.kernel.types.lookup("struct cfs_rq"), group)
            yield from _cfs_tasks(ctx, queue, depth + 1)
            continue
        task = _container(se.address, ctx, "struct task_struct", "se")
        yield _task_prio(ctx, task), task
