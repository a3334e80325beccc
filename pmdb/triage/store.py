"""The results file: one JSON record per line, appended as each dump is triaged, so a
rerun (or a run that was stopped) skips every dump whose path, size and mtime are unchanged.

A line that does not parse (a run killed mid-write) is ignored; the newest line for a key
wins. Error rows are kept too: a dump that failed is not retried until it changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from pmdb.triage.record import Record, file_key

Key = tuple[str, int, int]


def default_path() -> Path:
    """pmdb's cache directory (as pmdb.toml's cache.directory would set it) / triage.jsonl."""
    from pmdb.cache import default_directory

    return default_directory() / "triage.jsonl"


def _key(rec: Record) -> Key | None:
    path, size, mtime = rec.get("path"), rec.get("size"), rec.get("mtime")
    if isinstance(path, str) and isinstance(size, int) and isinstance(mtime, int):
        return path, size, mtime
    return None


class ResultStore:
    """Records by (path, size, mtime), backed by an append-only JSON Lines file."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self._done: dict[Key, Record] = {}
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def _load(self, path: Path) -> None:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                key = _key(rec) if isinstance(rec, dict) else None
                if key is not None:
                    self._done[key] = rec

    def get(self, dump: str) -> Record | None:
        """The stored record of a dump as it is now on disk, or None."""
        key = file_key(dump)
        return self._done.get(key) if key is not None else None

    def add(self, rec: Record) -> None:
        """Keep a record, and append it to the file at once (a stopped run keeps it)."""
        key = _key(rec)
        if key is None:
            return
        self._done[key] = rec
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")

    def add_all(self, recs: Iterable[Record]) -> None:
        for rec in recs:
            self.add(rec)
