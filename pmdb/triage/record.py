"""One dump -> one triage record: what crashed, where, on which kernel or program, and when.

A record is a plain dict (JSON as it is, picklable for Dask) with the keys of FIELDS; a dump
that cannot be read is a record too, with ``error`` set to the one line pmdb gives. Kernel
facts come from the kernel model (sysinfo, the panic task's stack), user-core facts from the
process model (::status's signal row, the first thread's stack).
"""

from __future__ import annotations

import os
from typing import Any

from pmdb.config import Config
from pmdb.errors import PmdbError

Record = dict[str, Any]

# every record has these keys; None where a dump does not tell
FIELDS: tuple[str, ...] = (
    "path", "size", "mtime", "kind", "error", "arch", "release", "build_id", "executable",
    "hostname", "time", "time_source", "uptime", "crash_line", "signal", "pid", "comm", "cpu",
    "function", "signature", "signature_id", "taint", "oot_modules", "frames", "stack_note",
    "warnings",
)


def file_key(path: str) -> tuple[str, int, int] | None:
    """(absolute path, size, mtime in ns): what a stored result is valid for; None when
    the file cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def empty_record(path: str) -> Record:
    rec: Record = dict.fromkeys(FIELDS)
    key = file_key(path)
    rec["path"] = key[0] if key else os.path.abspath(path)
    rec["size"], rec["mtime"] = (key[1], key[2]) if key else (None, None)
    rec["signature"], rec["oot_modules"], rec["frames"], rec["warnings"] = [], [], [], []
    return rec


def triage_dump(path: str, config: Config | None = None) -> Record:
    """The record of one dump; never raises (a failure is the record's ``error``), so one
    bad dump in a fleet is one row, not the end of the run."""
    rec = empty_record(path)
    try:
        _fill(rec, path, config or Config())
    except PmdbError as err:
        rec["kind"], rec["error"] = "error", str(err)
    except OSError as err:
        rec["kind"], rec["error"] = "error", f"{os.path.basename(path)}: {err.strerror or err}"
    except (MemoryError, RecursionError, ValueError, KeyError, IndexError, TypeError,
            AttributeError, ArithmeticError) as err:
        # a defect met on damaged data: still one line, named so it can be reported
        rec["kind"] = "error"
        rec["error"] = f"{os.path.basename(path)}: {type(err).__name__}: {err}"
    return rec


def _fill(rec: Record, path: str, config: Config) -> None:
    from pmdb.opener import open_target
    from pmdb.os.linux.kernel import LinuxKernel
    from pmdb.os.user.process import UserProcess

    target = open_target(path, config=config)
    try:
        rec["arch"] = target.arch.name
        rec["warnings"] = list(target.warnings)
        if isinstance(target.os, LinuxKernel):
            from pmdb.triage.kernel import kernel_facts

            rec["kind"] = "vmcore"
            rec.update(kernel_facts(target))
        elif isinstance(target.os, UserProcess):
            from pmdb.triage.user import user_facts

            rec["kind"] = "core"
            rec.update(user_facts(target))
        else:
            raise PmdbError(f"{os.path.basename(path)}: a {target.kind} is not a crash to triage")
    finally:
        target.close()
    if rec["time"] is None and rec["mtime"] is not None:
        rec["time"], rec["time_source"] = rec["mtime"] / 1e9, "file"
