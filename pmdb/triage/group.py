"""Records -> distinct crashes: equal signatures are one crash, crashes whose signatures
share their top frames are one family (shown together), ranked by how many dumps each has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from pmdb.triage.record import Record
from pmdb.triage.signature import near_key

NO_STACK = "(no stack)"


@dataclass
class Crash:
    """One distinct crash: its signature and what the dumps that have it say."""

    signature_id: str
    signature: list[str]
    family: int = 0                       # crashes with the same top frames share a family
    rank: int = 0
    count: int = 0
    function: str | None = None
    crash_line: str | None = None
    kind: str | None = None               # vmcore or core
    first_seen: float | None = None
    last_seen: float | None = None
    kernels: list[str] = field(default_factory=list)      # releases, or executables of user cores
    hosts: list[str] = field(default_factory=list)
    representative: str = ""
    dumps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(rec: Record) -> str:
    return rec.get("signature_id") or f"{NO_STACK}:{rec.get('crash_line') or ''}"


def group(records: Iterable[Record]) -> tuple[list[Crash], list[Record]]:
    """(crashes ranked by count, the error records)."""
    crashes: dict[str, Crash] = {}
    members: dict[str, list[Record]] = {}
    errors: list[Record] = []
    for rec in records:
        if rec.get("error"):
            errors.append(rec)
            continue
        key = _key(rec)
        if key not in crashes:
            crashes[key] = Crash(signature_id=rec.get("signature_id") or NO_STACK,
                                 signature=list(rec.get("signature") or []))
        members.setdefault(key, []).append(rec)
    for key, crash in crashes.items():
        _summarize(crash, members[key])
    return _rank(list(crashes.values())), errors


def _summarize(crash: Crash, recs: list[Record]) -> None:
    by_time = sorted(recs, key=lambda r: (r.get("time") is None, r.get("time") or 0, r["path"]))
    times = [r["time"] for r in by_time if r.get("time") is not None]
    first = by_time[0]
    crash.count = len(recs)
    crash.function, crash.crash_line, crash.kind = first.get("function"), first.get("crash_line"), first.get("kind")
    crash.first_seen, crash.last_seen = (min(times), max(times)) if times else (None, None)
    crash.kernels = sorted({k for r in recs if (k := r.get("release") or r.get("executable"))})
    crash.hosts = sorted({h for r in recs if (h := r.get("hostname"))})
    # the newest dump: the one most worth opening
    crash.representative = by_time[-1]["path"]
    crash.dumps = [r["path"] for r in by_time]


def _rank(crashes: list[Crash]) -> list[Crash]:
    """Families by their total count, crashes by count inside their family; ties by the
    most recent dump, then by signature (a stable order)."""
    families: dict[tuple[str, ...], list[Crash]] = {}
    for c in crashes:
        families.setdefault(near_key(c.signature) or (c.signature_id,), []).append(c)

    def order(cs: list[Crash]) -> tuple[int, float, str]:
        return (-sum(c.count for c in cs), -max((c.last_seen or 0) for c in cs), cs[0].signature_id)

    out: list[Crash] = []
    for number, members in enumerate(sorted(families.values(), key=order), 1):
        for c in sorted(members, key=lambda c: order([c])):
            c.family = number
            out.append(c)
    for rank, c in enumerate(out, 1):
        c.rank = rank
    return out
