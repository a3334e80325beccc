"""crash's ``sig`` (a task's signal handling) and ``swap`` (the swap devices), in crash's layouts."""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError
from pmdb.os.linux import devices as devmodel
from pmdb.os.linux import irq as irqmodel
from pmdb.os.linux import signals
from pmdb.os.linux import timers as timermodel
from pmdb.os.linux.fs import Fs
from pmdb.os.linux.meminfo import swap_infos, swap_usage
from pmdb.output import Dec, Hex
from pmdb.types.value import Object

from .crash_layout import mkstring
from .linux_files import crash_tasks, task_object
from .linux_proc import task_header
from .lists import symbol_namer

SIG_USAGE = "[-l | -g] [pid | task ...]"
NSIG = 64


@dcmd("sig", addr="optional", synopsis="crash's sig: a task's signal handlers, pending and blocked signals",
      example="sig 1", usage=SIG_USAGE)
def sig(ctx: Context, *args: Any) -> None:
    """``sig [PID | TASK ...]`` (the current task when none is named): the thread group's
    signal_struct and each signal's sigaction (handler, mask, flags), then the task's
    pending flag, blocked set and private queue and the group's shared queue, as crash
    lays them out. ``sig -g``: the group's part once, then each thread of the group's own
    (indented, under its header). ``sig -l`` lists the signal numbers and names."""
    positional, opts = parse_options("sig", {"l": "list", "g": "group"}, args, SIG_USAGE)
    if opts.get("list"):
        for n, name in signal_names():
            ctx.out.line(f"{' ' if n < 10 else ''}[{n}] {name}")
        return
    for n, task in enumerate(crash_tasks(ctx, positional, "sig")):
        lines = ([""] if n else []) + [task_header(task)]
        obj = task_object(ctx, task)
        group = _group_lines(ctx, obj)
        if not group[1:]:                    # no signal_struct
            lines += group
        elif opts.get("group"):
            lines += [*group, *_shared_lines(ctx, obj)]
            for thread in sorted((t for t in ctx.kernel.tasks() if t.tgid == task.tgid), key=lambda t: t.pid):
                lines += ["", f"  {task_header(thread)}",
                          *(f"  {line}" for line in _thread_lines(ctx, task_object(ctx, thread)))]
        else:
            lines += [*group, *_thread_lines(ctx, obj), *_shared_lines(ctx, obj)]
        ctx.out.record({"task": Hex(task.address), "pid": task.pid}, text=lines)


def _group_lines(ctx: Context, obj: Object) -> list[str]:
    """The thread group's signal_struct and its handlers (just the first line when none)."""
    width = 2 * ctx.target.arch.ptr_size
    signal = int(obj.member("signal"))
    if not signal:
        return [f"SIGNAL_STRUCT: {signal:x}  "]
    sigstruct = obj.member("signal").deref()
    lines = [f"SIGNAL_STRUCT: {signal:x}  NR_THREADS: {int(sigstruct.member('nr_threads'))}",
             f" SIG {mkstring('SIGACTION', 9 if width == 8 else width, 'center')} {'HANDLER':>10} "
             f"{mkstring('MASK', 16, 'center')} {'FLAGS':<{width}}"]
    for h in signals.handlers(obj.member("sighand").deref())[:NSIG]:
        handler = {0: "SIG_DFL", 1: "SIG_IGN", (1 << 8 * ctx.target.arch.ptr_size) - 1: "SIG_ERR"}.get(
            h.handler, f"{h.handler:x}")
        lines.append(f"{' ' if h.signal < 10 else ''}[{h.signal}] {h.address:<10x} {handler:>10} "
                     f"{h.mask:016x} {h.flags:x} {signals.flag_names(h.flags)}")
    return lines


def _thread_lines(ctx: Context, obj: Object) -> list[str]:
    """One thread's own part: its pending flag, blocked set and private queue."""
    ti_flags = int(obj.member("thread_info").member("flags"))
    bit = signals.TIF_SIGPENDING.get(ctx.target.arch.name)
    if bit is None:
        raise CommandError(f"sig: TIF_SIGPENDING of {ctx.target.arch.name} is not known to pmdb")
    return [f"SIGPENDING: {'yes' if ti_flags >> bit & 1 else 'no'}",
            f"   BLOCKED: {signals.sigset(obj.member('blocked')):016x}",
            "PRIVATE_PENDING", *_pending_lines(ctx, obj.member("pending"))]


def _shared_lines(ctx: Context, obj: Object) -> list[str]:
    return ["SHARED_PENDING", *_pending_lines(ctx, obj.member("signal").deref().member("shared_pending"))]


def _pending_lines(ctx: Context, pending: Object) -> list[str]:
    """A sigpending's set and queue (``SIGQUEUE:  SIG  SIGINFO`` rows, or ``(empty)``)."""
    lines = [f"    SIGNAL: {signals.sigset(pending.member('signal')):016x}"]
    queue = signals.queued(pending, ctx.kernel.types.lookup("struct sigqueue"))
    if not queue:
        return [*lines, "  SIGQUEUE: (empty)"]
    width = 2 * ctx.target.arch.ptr_size
    return [*lines, f"  SIGQUEUE:  SIG  {mkstring('SIGINFO', width, 'center')}",
            *(f"             {signo:3d}  {info:x}" for signo, info in queue)]


def signal_names() -> list[tuple[int, str]]:
    """crash's sig -l: the kernel's names (aliases after a slash), then SIGRTMIN (32),
    SIGRTMIN+1..16, SIGRTMAX-15..1 and SIGRTMAX (64)."""
    classic = ("SIGHUP SIGINT SIGQUIT SIGILL SIGTRAP SIGABRT/SIGIOT SIGBUS SIGFPE SIGKILL SIGUSR1 "
               "SIGSEGV SIGUSR2 SIGPIPE SIGALRM SIGTERM SIGSTKFLT SIGCHLD/SIGCLD SIGCONT SIGSTOP "
               "SIGTSTP SIGTTIN SIGTTOU SIGURG SIGXCPU SIGXFSZ SIGVTALRM SIGPROF SIGWINCH "
               "SIGIO/SIGPOLL SIGPWR SIGSYS/SIGUNUSED").split()
    names = list(enumerate(classic, 1))
    rtmin = len(classic) + 1
    low = (NSIG - rtmin - 1) - (NSIG - rtmin - 1) // 2
    for n in range(rtmin, NSIG + 1):
        if n in (rtmin, NSIG):
            names.append((n, "SIGRTMIN" if n == rtmin else "SIGRTMAX"))
        elif n - rtmin <= low:
            names.append((n, f"SIGRTMIN+{n - rtmin}"))
        else:
            names.append((n, f"SIGRTMAX-{NSIG - n}"))
    return names


SWAP_HEADER = "SWAP_INFO_STRUCT    TYPE       SIZE       USED     PCT  PRI  FILENAME"


@dcmd("swap", addr="none", synopsis="crash's swap: each swap device or file, its size and use",
      example="swap")
def swap(ctx: Context) -> None:
    """``swap``: each ``swap_info_struct`` in use (``swap_info[nr_swapfiles]``): partition or
    file, size and pages used in kB, use in percent, priority and path, as crash shows them."""
    kernel, mem = ctx.kernel, ctx.target.memory
    infos = swap_infos(kernel.vars())
    if infos is None:
        raise CommandError("swap: no swap_info or nr_swapfiles in this kernel's symbols")
    info_t = kernel.types.lookup("struct swap_info_struct")
    page_kb = kernel.page_size() // 1024
    lines, records = [SWAP_HEADER], []
    for addr in infos:
        si = Object(mem, info_t, addr)
        pages, used = (n * page_kb for n in swap_usage(mem, kernel.types, addr))
        pct = used * 100 // pages if pages else 0
        path = _swap_path(ctx, si)
        kind = "PARTITION" if _is_partition(ctx, si) else "  FILE   "
        lines.append(f"{mkstring(f'{addr:x}', 16, 'center')}  {kind} {mkstring(f'{pages}k', 10, 'center-right')} "
                     f"{mkstring(f'{used}k', 10, 'center-right')} {mkstring(f'{pct:2d}%', 4, 'center-right')} "
                     f"{int(si.member('prio')):>4}  {path}")
        records.append({"address": Hex(addr), "size_kb": Dec(pages), "used_kb": Dec(used),
                        "prio": int(si.member("prio")), "path": path})
    ctx.out.record({"swap": records}, text=lines)


def _swap_path(ctx: Context, si: Object) -> str:
    file = int(si.member("swap_file"))
    if not file:
        return "(unknown)"
    return Fs(ctx.target.memory, ctx.kernel.types).path_string(si.member("swap_file").member("f_path"))


def _is_partition(ctx: Context, si: Object) -> bool:
    """A block device (a partition) rather than a file: its inode's mode (6.10 dropped
    ``old_block_size``, which crash read before)."""
    file = si.member("swap_file")
    if not int(file):
        return False
    return Fs(ctx.target.memory, ctx.kernel.types).file_type(int(file.member("f_inode"))) == "BLK "


IRQ_USAGE = "[-s] [irq ...]"


@dcmd("irq", addr="none", synopsis="crash's irq: each irq's descriptor, actions and names; -s its counts",
      example="irq -s", usage=IRQ_USAGE)
def irq(ctx: Context, *args: Any) -> None:
    """``irq [IRQ ...]``: each irq number up to nr_irqs (or those named, in decimal) with its
    struct irq_desc and each struct irqaction and name, "(unused)" where there is none.
    ``irq -s``: /proc/interrupts' table: per-CPU counts, chip and flow, action names."""
    positional, opts = parse_options("irq", {"s": "stats"}, args, IRQ_USAGE)
    kernel, mem = ctx.kernel, ctx.target.memory
    descs = irqmodel.irq_descs(mem, kernel.types, kernel.lookup)
    count = irqmodel.nr_irqs(mem, kernel.lookup)
    wanted = [_irq_number(w, count) for w in positional] if positional else range(count)
    if opts.get("stats"):
        _irq_stats(ctx, descs, wanted)
        return
    width = max(2 * ctx.target.arch.ptr_size, len("IRQ_DESC/_DATA"))
    lines = [f" IRQ  {mkstring('IRQ_DESC/_DATA', 2 * ctx.target.arch.ptr_size, 'center')}  "
             f"{mkstring('IRQACTION', 2 * ctx.target.arch.ptr_size, 'center')}  NAME"]
    records = []
    for n in wanted:
        desc = descs.get(n, 0)
        info = irqmodel.irq_info(mem, kernel.types, n, desc, []) if desc else None
        actions = info.actions if info is not None else []
        head = (f"{mkstring(str(n), 4, 'center-right')}  "
                f"{mkstring(f'{desc:x}' if desc else '(unused)', width, 'center')}  ")
        if not actions:
            lines.append(head + f"{mkstring('(unused)', width, 'center')}  ")
        for i, (action, name) in enumerate(actions):
            lines.append((head if i == 0 else " " * (4 + 2 + width + 2))
                         + f"{mkstring(f'{action:x}', width, 'center')}  " + (f'"{name}"' if name else ""))
        records.append({"irq": Dec(n), "irq_desc": Hex(desc) if desc else None,
                        "actions": [{"irqaction": Hex(a), "name": nm} for a, nm in actions]})
    ctx.out.record({"irqs": records}, text=lines)


def _irq_number(word: Any, count: int) -> int:
    try:
        n = word if isinstance(word, int) else int(str(word), 10)
    except ValueError:
        raise CommandError(f"irq: invalid IRQ value: {word}") from None
    if not 0 <= n < count:
        raise CommandError(f"irq: invalid IRQ value: {n}  ({count - 1} max)")
    return n


def _irq_stats(ctx: Context, descs: dict[int, int], wanted: Any) -> None:
    """crash's irq -s (generic_show_interrupts): the irqs that have an action."""
    kernel, mem = ctx.kernel, ctx.target.memory
    cpus = [c.index for c in kernel.cpus() if c.present]
    offsets = [kernel.km.layout.per_cpu_offset(c) for c in cpus]
    lines = ["     " + "".join(f"{f'CPU{c}':>10} " for c in cpus)]
    records = []
    for n in wanted:
        if n not in descs:
            continue
        info = irqmodel.irq_info(mem, kernel.types, n, descs[n], offsets)
        if not info.actions:
            continue
        names = ",".join(name for _, name in info.actions if name)
        chip = f"{info.chip:>8}" + (f"-{info.flow:<8}" if info.flow else "")
        lines.append(f"{n:3d}: " + "".join(f"{c:10d} " for c in info.counts) + f"{chip} {names}")
        records.append({"irq": Dec(n), "counts": info.counts, "chip": info.chip, "flow": info.flow,
                        "names": names})
    ctx.out.record({"interrupts": records}, text=lines)


@dcmd("dev", addr="none", synopsis="crash's dev: character and block device majors and their operations",
      example="dev")
def dev(ctx: Context, *args: Any) -> None:
    """``dev``: each character major (its name, struct cdev and file_operations) and each
    block major (its name, struct gendisk and block_device_operations), in crash's layout.
    crash's -i (I/O ports and memory), -d and -D (disk I/O) are not in pmdb yet."""
    positional, opts = parse_options("dev", {"i": "io", "d": "disks", "D": "disks", "p": "pci"}, args, "")
    if opts or positional:
        raise CommandError("dev: only the device table (no options) is in pmdb yet")
    kernel = ctx.kernel
    table = devmodel.Devices(ctx.target.memory, kernel.types, kernel.lookup)
    describe = symbol_namer(ctx)
    width = 2 * ctx.target.arch.ptr_size
    lines = [f"CHRDEV    NAME           {mkstring('CDEV', width, 'center')}  {'OPERATIONS':<{width}}"]
    chars, blocks = table.char_majors(), table.block_majors()
    lines += [_dev_row(m, width, describe) for m in chars]
    lines += ["", f"BLKDEV    NAME           {mkstring('GENDISK', width, 'center-right')}  {'OPERATIONS':<{width}}"]
    lines += [_dev_row(m, width, describe) for m in blocks]
    records = [{"kind": kind, "major": Dec(m.major), "name": m.name, "object": Hex(m.object), "ops": Hex(m.ops)}
               for kind, majors in (("char", chars), ("block", blocks)) for m in majors]
    ctx.out.record({"devices": records}, text=lines)


def _dev_row(m: Any, width: int, describe: Any) -> str:
    start = f" {m.major:3d}      {m.name:<13} "
    if not m.ops:
        return start + " " + mkstring("(none)", width, 'center')
    return start + f" {m.object:{width}x}  " + (describe(m.ops) or f"{m.ops:x}")


@dcmd("timer", addr="none", synopsis="crash's timer: each CPU's timer wheel, by expiry",
      example="timer")
def timer(ctx: Context, *args: Any) -> None:
    """``timer``: jiffies, then for each CPU and timer base (BASE_STD, BASE_DEF) every pending
    timer_list sorted by expiry: when it expires, how many jiffies from now, its address
    and function. crash's -r (hrtimers) and -C CPU are not in pmdb yet."""
    positional, opts = parse_options("timer", {"r": "hrtimers", "C:": "cpu"}, args, "")
    if opts or positional:
        raise CommandError("timer: -r and -C are not in pmdb yet (timer alone lists the timer wheels)")
    kernel, mem = ctx.kernel, ctx.target.memory
    bases, jiffies_at = kernel.lookup("timer_bases"), kernel.lookup("jiffies")
    if bases is None or jiffies_at is None:
        raise CommandError("timer: no timer_bases (4.8+) or jiffies in this kernel's symbols")
    jiffies = mem.ptr(jiffies_at)            # unsigned long jiffies (include/linux/jiffies.h)
    flen = max(len(str(jiffies)), len("JIFFIES"))
    lines = [f"{'JIFFIES':<{flen}}", f"{jiffies:>{flen}}", ""]
    nr_bases = 2 if kernel.lookup("sysctl_timer_migration") is not None else 1
    size = kernel.types.lookup("struct timer_base").sizeof()
    describe = symbol_namer(ctx)
    records = []
    for n, cpu in enumerate(c.index for c in kernel.cpus() if c.present):
        lines += [""] if n else []
        for b in range(nr_bases):
            addr = kernel.km.layout.per_cpu_address(bases, cpu) + b * size
            timers = sorted(timermodel.wheel_timers(mem, kernel.types, addr), key=lambda t: t.expires)
            lines += _timer_lines(cpu, b, addr, timers, jiffies, flen, describe)
            records += [{"cpu": cpu, "base": b, "timer_list": Hex(t.address), "expires": Dec(t.expires),
                         "function": Hex(t.function)} for t in timers]
    ctx.out.record({"timers": records}, text=lines)


def _timer_lines(cpu: int, base: int, addr: int, timers: list[Any], jiffies: int, flen: int,
                 describe: Any) -> list[str]:
    """One timer base in crash's layout (TTE wide enough for the farthest timer and a sign)."""
    lines = [f"TIMER_BASES[{cpu}][{'BASE_DEF' if base else 'BASE_STD'}]: {addr:x}"]
    ttes = [_signed(t.expires - jiffies) for t in timers]
    tlen = max(len(str(max((abs(x) for x in ttes), default=0))) + 1, len("TTE"))
    lines.append(f"  {'EXPIRES':<{flen}}     {'TTE':<{tlen}}     TIMER_LIST     FUNCTION")
    for t, tte in zip(timers, ttes, strict=True):
        lines.append(f"  {t.expires:>{flen}}  {tte:>{tlen}}  {mkstring(f'{t.address:16x}', 16, 'center')}  "
                     f"{t.function:16x}  <{describe(t.function) or ''}>")
    if not timers:
        lines.append("  (none)")
    return lines


def _signed(value: int) -> int:
    """expires - jiffies as crash's signed long sees it (wrapped to 64 bits)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value
