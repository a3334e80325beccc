"""A user core's triage facts: the program and its build-id, the fatal signal as
``::status`` words it, and the signature of the thread that took it."""

from __future__ import annotations

from typing import Any

from pmdb.os.user.process import UserProcess, process_status
from pmdb.symbols.finder import build_id_in_memory
from pmdb.target import Target
from pmdb.triage.signature import UNKNOWN, signature_id, user_signature


def user_facts(target: Target) -> dict[str, Any]:
    """Facts of a user-core Target (its os is a UserProcess)."""
    proc: Any = target.os
    assert isinstance(proc, UserProcess)
    rows = dict(process_status(proc))
    exe = proc.executable() or None
    threads = proc.threads()
    first = threads[0] if threads else None
    frames = target.stack(first) if first is not None else []
    names = [_name(target, f.lookup_pc) for f in frames]
    sig = user_signature(names)
    return {
        "executable": exe, "build_id": _build_id(proc, exe),
        "signal": rows.get("signal"), "crash_line": _crash_line(rows),
        "pid": first.id if first is not None else None, "comm": proc.program()[0] or None,
        "frames": names, "signature": sig, "signature_id": signature_id(sig) if sig else None,
        "function": sig[0] if sig else None,
    }


def _name(target: Target, pc: int) -> str:
    hit = target.symbols.resolve(pc)
    return hit[0].name if hit is not None else UNKNOWN


def _crash_line(rows: dict[str, str]) -> str | None:
    signal = rows.get("signal")
    if signal is None:
        return None
    fault = rows.get("fault address")
    sender = rows.get("sent by")
    return signal + (f" at {fault}" if fault else "") + (f", sent by {sender}" if sender else "")


def _build_id(proc: UserProcess, exe: str | None) -> str | None:
    """The executable's build-id as its ELF header in the core holds it."""
    if not exe:
        return None
    start = next((fm.start for fm in proc.core.files if fm.path == exe and fm.offset == 0), None)
    if start is None:
        return None
    raw = build_id_in_memory(proc.core.space(), start)
    return raw.hex() if raw else None
