"""The kernel log: ``::msgbuf`` (mdb's spelling) and ``log`` (crash's format and options).

Both read the printk ring through VMCOREINFO alone (pmdb.os.linux.printk.ring),
so they work even when the dump's BTF or task list is damaged.
"""

from __future__ import annotations

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError
from pmdb.os.linux.mm.kernel_memory import kernel_parts
from pmdb.os.linux.printk.ring import LogRecord, crash_lines, read_log, text_lines, timestamp


def _records(ctx: Context) -> list[LogRecord]:
    parts = kernel_parts(ctx.target)
    if parts is None:
        raise CommandError("the kernel log needs a Linux kernel dump")
    return read_log(parts.space, parts.info, parts.lookup)


def _json(ctx: Context, rec: LogRecord) -> None:
    ctx.out.record(seq=rec.seq, ts_nsec=rec.ts_nsec, level=rec.level, facility=rec.facility,
                   caller=rec.caller, text=rec.text.decode("utf-8", errors="replace"),
                   subsystem=rec.subsystem, device=rec.device)


@dcmd("msgbuf", addr="none", synopsis="print the kernel log (the printk ring buffer)",
      example="::msgbuf -v", opts={"v": "verbose"}, usage="[-v]")
def msgbuf(ctx: Context, verbose: bool = False) -> None:
    """The kernel's message buffer, oldest first, one line per line of text. -v adds each
    record's timestamp (seconds since boot), facility.level and caller (T<pid> for a task,
    C<cpu> for interrupt context), and its device, when the driver gave one. crash's
    format is ``log``."""
    for rec in _records(ctx):
        if ctx.out.json_mode:
            _json(ctx, rec)
            continue
        lines = text_lines(rec)
        if not verbose:
            for line in lines:
                ctx.out.line(line)
            continue
        head = f"{timestamp(rec)}{rec.facility_name + '.' + rec.level_name:<12} {rec.caller:>6}  "
        ctx.out.line(head + lines[0])
        for line in lines[1:]:
            ctx.out.line(" " * len(head) + line)
        if rec.subsystem or rec.device:
            ctx.out.line(" " * len(head) + f"SUBSYSTEM={rec.subsystem} DEVICE={rec.device}")


@dcmd("log", addr="none", synopsis="crash's log: the kernel log with [seconds] timestamps",
      example="log -m", opts={"t": "no_time", "m": "levels", "d": "dev_info"}, usage="[-tmd]")
def log(ctx: Context, no_time: bool = False, levels: bool = False, dev_info: bool = False) -> None:
    """The kernel log as crash's ``log`` prints it: ``[    5.085745] text``, continuation
    lines indented under the text. -t leaves out the timestamps, -m adds each record's
    level as ``<n>``, -d adds the device information (SUBSYSTEM=, DEVICE=) below it."""
    for rec in _records(ctx):
        if ctx.out.json_mode:
            _json(ctx, rec)
            continue
        if no_time:
            prefix = f"<{rec.level:x}>" if levels else ""
            lines = text_lines(rec)
            ctx.out.line(prefix + lines[0])
            for line in lines[1:]:
                ctx.out.line(" " * len(prefix) + line)
        else:
            for line in crash_lines(rec, level=levels):
                ctx.out.line(line)
        if dev_info and (rec.subsystem or rec.device):
            pad = " " * (0 if no_time else len(timestamp(rec)))
            if rec.subsystem:
                ctx.out.line(f"{pad}SUBSYSTEM={rec.subsystem}")
            if rec.device:
                ctx.out.line(f"{pad}DEVICE={rec.device}")
