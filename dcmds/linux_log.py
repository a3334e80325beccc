"""The kernel log: ``::msgbuf`` (mdb's spelling) and ``log`` (crash's format and options).

Both read the printk ring through VMCOREINFO alone (pmdb.os.linux.printk.ring),
so they work even when the dump's BTF or task list is damaged.
"""

from __future__ import annotations

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError
from pmdb.os.linux.mm.kernel_memory import kernel_parts
from pmdb.os.linux.printk.ring import LogRecord, crash_lines, kernel_log, text_lines, timestamp


def _records(ctx: Context) -> list[LogRecord]:
    parts = kernel_parts(ctx.target)
    if parts is None:
        raise CommandError("the kernel log needs a Linux kernel dump")
    return kernel_log(parts)


def _record(ctx: Context, rec: LogRecord, lines: list[str]) -> None:
    """One log record: its fields in JSON, ``lines`` (the layout of msgbuf or log) as text."""
    ctx.out.record({"seq": rec.seq, "ts_nsec": rec.ts_nsec, "level": rec.level, "facility": rec.facility,
                    "caller": rec.caller, "text": rec.text.decode("utf-8", errors="replace"),
                    "subsystem": rec.subsystem, "device": rec.device}, text=lines)


@dcmd("msgbuf", addr="none", synopsis="print the kernel log (the printk ring buffer)",
      example="::msgbuf -v", opts={"v": "verbose"}, usage="[-v]")
def msgbuf(ctx: Context, verbose: bool = False) -> None:
    """The kernel's message buffer, oldest first, one line per line of text. -v adds each
    record's timestamp (seconds since boot), facility.level and caller (T<pid> for a task,
    C<cpu> for interrupt context), and its device, when the driver gave one. crash's
    format is ``log``."""
    for rec in _records(ctx):
        _record(ctx, rec, _msgbuf_lines(rec) if verbose else text_lines(rec))


def _msgbuf_lines(rec: LogRecord) -> list[str]:
    """::msgbuf -v: time, facility.level and caller before the text, the device below it."""
    lines = text_lines(rec)
    head = f"{timestamp(rec)}{rec.facility_name + '.' + rec.level_name:<12} {rec.caller:>6}  "
    out = [head + lines[0]] + [" " * len(head) + line for line in lines[1:]]
    if rec.subsystem or rec.device:
        out.append(" " * len(head) + f"SUBSYSTEM={rec.subsystem} DEVICE={rec.device}")
    return out


@dcmd("log", addr="none", synopsis="crash's log: the kernel log with [seconds] timestamps",
      example="log -m", opts={"t": "no_time", "m": "levels", "d": "dev_info"}, usage="[-tmd]")
def log(ctx: Context, no_time: bool = False, levels: bool = False, dev_info: bool = False) -> None:
    """The kernel log as crash's ``log`` prints it: ``[    5.085745] text``, continuation
    lines indented under the text. -t leaves out the timestamps, -m adds each record's
    level as ``<n>``, -d adds the device information (SUBSYSTEM=, DEVICE=) below it."""
    for rec in _records(ctx):
        _record(ctx, rec, _log_lines(rec, no_time, levels, dev_info))


def _log_lines(rec: LogRecord, no_time: bool, levels: bool, dev_info: bool) -> list[str]:
    """crash's log layout of one record."""
    if no_time:
        prefix = f"<{rec.level:x}>" if levels else ""
        lines = text_lines(rec)
        out = [prefix + lines[0]] + [" " * len(prefix) + line for line in lines[1:]]
    else:
        out = list(crash_lines(rec, level=levels))
    if dev_info and (rec.subsystem or rec.device):
        pad = " " * (0 if no_time else len(timestamp(rec)))
        out += [f"{pad}SUBSYSTEM={rec.subsystem}"] if rec.subsystem else []
        out += [f"{pad}DEVICE={rec.device}"] if rec.device else []
    return out
