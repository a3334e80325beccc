"""The panic message, found in the kernel log the way crash's ``sys`` finds it:
the log's lines (pmdb.os.linux.printk.ring) searched in crash's order of precedence."""

from __future__ import annotations

from collections.abc import Callable

from pmdb.errors import PmdbError
from pmdb.os.linux.printk.ring import LogRecord, text_lines

# Searched pass by pass: the first line that matches in the earliest pass wins (crash's order).
PANIC_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("general protection fault: ", "double fault: ", "divide error: ", "stack segment: "),
    ("SysRq : Netdump", "SysRq : Crash", "SysRq : Trigger a crash", "sysrq: Trigger a crash"),
    ("Kernel panic: ", "Kernel panic - "),
    ("Oops: ", "Kernel BUG at", "kernel BUG at", "Unable to handle kernel paging request",
     "Unable to handle kernel NULL pointer dereference", "BUG: unable to handle kernel"),
)


def panic_message(lines: list[str]) -> str | None:
    """The line crash's ``sys`` would call the panic message."""
    for patterns in PANIC_PATTERNS:
        for line in lines:
            if any(p in line for p in patterns):
                return line
    return None


def log_texts(records: Callable[[], list[LogRecord]]) -> list[str]:
    """Every line of the kernel log, oldest first, from ``records`` (ring.kernel_log); []
    when there is no readable ring."""
    try:
        return [line for rec in records() for line in text_lines(rec)]
    except PmdbError:
        return []


# The first line of a crash report, by the words each kind of report starts with; unlike
# crash's order (panic_message) the earliest such line wins: the report that started the end.
TROUBLE_PATTERNS: tuple[str, ...] = (
    "BUG: ", "Oops", "kernel BUG at", "Kernel BUG at", "WARNING: ", "general protection fault",
    "divide error: ", "double fault: ", "stack segment: ", "Unable to handle kernel",
    "Internal error: ", "sysrq: Trigger a crash", "SysRq : Trigger a crash", "INFO: task ",
    "Uhhuh. NMI", "Dazed and confused", " invoked oom-killer: ", "Kernel panic - ",
)


def crash_line(lines: list[str]) -> str | None:
    """The log's first panic, oops, BUG or WARN line (None when it has none)."""
    for line in lines:
        if any(p in line for p in TROUBLE_PATTERNS):
            return line.strip()
    return None
