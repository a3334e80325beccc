"""Name lookups answered in an earlier session, kept in the cache beside the table they searched.

The first lookup of a name in a kernel's kallsyms or BTF is a scan of a few hundred KB
(0.2-0.4 ms each: a 4-byte CRC or name offset searched for in an array of them), and a
command's first run asks for a handful: ``kmem -s`` asks for eight, 2 ms of its 12. An
answer is a function of the searched table alone, so answers are kept in a small entry
named after that table's own cache entry (itself keyed by content), read at the first
lookup of a session and written back when the session closes having learnt new ones.

The entry is sealed like every cache entry (pmdb.seal) and its shape checked when read.
Answers are tuples of record indices (or type ids), and the caller checks each one found
against the table before using it (the record is called that name, of the right kind),
falling back to the scan when it does not hold: a damaged or wrong entry costs a scan. The
empty tuple records that the table has no such name; that cannot be checked without the
scan, and is trusted as the table's own cache entry is (sealed, and reached only by the
content it was made from).

Low layer: imports the cache and its seal only.
"""

from __future__ import annotations

import marshal
from pathlib import Path

from pmdb.cache import Cache
from pmdb.seal import sealed, unsealed

KIND = b"pmdbmm01"
MAX_ANSWERS = 4096          # an entry stays a few tens of KB however many sessions add to it

Answer = tuple[int, ...]


class LookupMemo:
    """The remembered answers of one table (see the module docstring)."""

    def __init__(self, cache: Cache, stem: Path) -> None:
        self.cache = cache
        self.stem = stem
        self._known: dict[str, Answer] | None = None      # read at the first get
        self._learnt: dict[str, Answer] = {}

    def get(self, key: str) -> Answer | None:
        """The answer remembered for key; None when there is none."""
        if self._known is None:
            self._known = self._read()
        hit = self._learnt.get(key)
        return hit if hit is not None else self._known.get(key)

    def put(self, key: str, answer: Answer) -> None:
        """Remember an answer the caller found by a scan (written when the session closes);
        it replaces a remembered one that did not hold."""
        if self._known is None:
            self._known = self._read()
        known = self._known
        if known.get(key) == answer or self._learnt.get(key) == answer:
            return
        if key in known or len(known) + len(self._learnt) < MAX_ANSWERS:
            self._learnt[key] = answer

    def save(self) -> None:
        """Write what this session learnt, with what the entry holds now (another session may
        have added to it since it was read); best effort, as every cache write."""
        if not self._learnt:
            return
        merged = {**self._read(), **self._learnt}
        if len(merged) <= MAX_ANSWERS:
            self.cache.discard(self.stem)
            self.cache.store(self.stem, sealed(KIND, marshal.dumps(merged)))
        self._known, self._learnt = merged, {}

    def _read(self) -> dict[str, Answer]:
        path = self.cache.find(self.stem)
        if path is None:
            return {}
        try:
            payload = unsealed(KIND, path.read_bytes())
            answers = marshal.loads(payload) if payload is not None else None
        except (OSError, ValueError, EOFError, TypeError):
            answers = None
        if not _well_formed(answers):
            return {}
        assert isinstance(answers, dict)
        return answers


def _well_formed(answers: object) -> bool:
    """A dict of names to tuples of non-negative ints, of the size save writes."""
    if not isinstance(answers, dict) or len(answers) > MAX_ANSWERS:
        return False
    return all(isinstance(k, str) and isinstance(v, tuple) and all(isinstance(i, int) and i >= 0 for i in v)
               for k, v in answers.items())
