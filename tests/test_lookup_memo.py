"""Name lookups remembered across sessions (pmdb/lookup_memo.py): the entry itself, and on the
6.1 fixture dump a second session answering kallsyms and BTF lookups without their scans,
with the same answers, and a remembered answer that does not hold costing a scan, never a
wrong answer."""

from __future__ import annotations

import marshal
from pathlib import Path

import pytest

from pmdb.cache import Cache, sealed
from pmdb.config import Config
from pmdb.lookup_memo import KIND, MAX_ANSWERS, LookupMemo
from pmdb.opener import open_target
from pmdb.symbols.kallsyms import NameText
from pmdb.target import Target
from pmdb.types.btf import BtfTypes
from tests.conftest import need_fixture
from tests.linux_vmcore import KASLR

SYMBOLS = ("slab_caches", "init_task", "jiffies", "__func__.0", "no_such_symbol_here")
TYPES = ("struct kmem_cache", "struct task_struct", "struct list_head", "pid_t", "union thread_union",
         "enum pid_type", "struct no_such_struct_here")


def test_a_memo_keeps_what_a_session_learnt(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    stem = cache.path("memo", "table")
    first = LookupMemo(cache, stem)
    assert first.get("a") is None
    first.put("a", (1, 2))
    first.put("gone", ())
    assert first.get("a") == (1, 2)
    first.save()
    other = LookupMemo(cache, stem)            # a session that started before the save
    other.put("b", (3,))
    second = LookupMemo(cache, stem)
    assert second.get("a") == (1, 2) and second.get("gone") == () and second.get("b") is None
    other.save()                               # merges with what the entry holds by then
    third = LookupMemo(cache, stem)
    assert (third.get("a"), third.get("b")) == ((1, 2), (3,))
    third.put("a", (7,))                       # a corrected answer replaces the kept one
    third.save()
    assert LookupMemo(cache, stem).get("a") == (7,)
    assert len(list(stem.parent.glob("table.*"))) == 1


@pytest.mark.parametrize("payload", [b"\x00" * 40, marshal.dumps({"a": [1]}), marshal.dumps({"a": (-1,)}),
                                     marshal.dumps({1: (1,)}), marshal.dumps(["a"])])
def test_a_memo_of_the_wrong_shape_is_empty(tmp_path: Path, payload: bytes) -> None:
    cache = Cache(tmp_path)
    stem = cache.path("memo", "table")
    cache.store(stem, sealed(KIND, payload))
    assert LookupMemo(cache, stem).get("a") is None


def test_a_damaged_memo_is_empty(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    stem = cache.path("memo", "table")
    memo = LookupMemo(cache, stem)
    memo.put("a", (1,))
    memo.save()
    (entry,) = stem.parent.iterdir()
    data = bytearray(entry.read_bytes())
    data[-2] ^= 1
    entry.write_bytes(bytes(data))
    assert LookupMemo(cache, stem).get("a") is None


def test_a_memo_stays_bounded(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    memo = LookupMemo(cache, cache.path("memo", "table"))
    for i in range(MAX_ANSWERS + 10):
        memo.put(f"n{i}", (i,))
    memo.save()
    again = LookupMemo(cache, cache.path("memo", "table"))
    assert again.get(f"n{MAX_ANSWERS - 1}") == (MAX_ANSWERS - 1,) and again.get(f"n{MAX_ANSWERS}") is None


# -- on a real dump -------------------------------------------------------------------------

def _open(cache: Path) -> Target:
    path = need_fixture(KASLR / "dump.202611221942")
    return open_target(str(path), config=Config({"cache.directory": str(cache)}))


def _answers(target: Target) -> list[object]:
    syms, types = target.symbols, target.types
    out: list[object] = [(n, sorted(s.addr for s in syms.named(n))) for n in SYMBOLS]
    for spelling in TYPES:
        try:
            t = types.lookup(spelling)
        except Exception as err:  # noqa: BLE001 - a missing type is an answer too
            out.append((spelling, type(err).__name__))
        else:
            out.append((spelling, str(t), t.sizeof()))
    return out


def _no_scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every kallsyms CRC search and search of the kernel's own BTF names count itself
    (a module's BTF is searched as before: its own names are few)."""
    scans: list[str] = []
    named, ids_named = NameText.named, BtfTypes._ids_named

    def counted_named(self: NameText, name: str) -> list[tuple[int, str]]:
        scans.append(name)
        return named(self, name)

    def counted_ids(self: BtfTypes, name: str):  # type: ignore[no-untyped-def]
        if self.base is None:
            scans.append(name)
        return ids_named(self, name)

    monkeypatch.setattr(NameText, "named", counted_named)
    monkeypatch.setattr(BtfTypes, "_ids_named", counted_ids)
    return scans


def test_a_second_session_answers_from_the_memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = _answers(_open(tmp_path / "none"))          # never closed: no memo written
    first = _open(tmp_path)
    assert _answers(first) == truth
    first.close()
    assert len(list((tmp_path / "memo").iterdir())) == 2     # kallsyms' and the BTF's
    scans = _no_scans(monkeypatch)
    second = _open(tmp_path)
    assert _answers(second) == truth
    assert not [s for s in scans if s in SYMBOLS or any(s in t for t in TYPES)], scans
    assert truth[3] != ("__func__.0", []) and truth[4] == ("no_such_symbol_here", [])   # many; none


def test_a_remembered_answer_that_does_not_hold_is_scanned_again(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    truth = _answers(_open(tmp_path / "none"))
    first = _open(tmp_path)
    _answers(first)
    first.close()
    for entry in (tmp_path / "memo").iterdir():         # every remembered index moved by one
        memo = LookupMemo(Cache(tmp_path), entry.with_name(entry.name.rsplit(".", 1)[0]))
        known = memo.get("")      # reads the entry
        assert known is None
        assert memo._known is not None
        for key, answer in memo._known.items():
            if answer:
                memo.put(key, tuple(i + 1 for i in answer))
        memo.save()
    scans = _no_scans(monkeypatch)
    second = _open(tmp_path)
    assert _answers(second) == truth
    assert {"init_task", "slab_caches", "kmem_cache", "task_struct"} <= set(scans)
    second.close()
    scans.clear()
    assert _answers(_open(tmp_path)) == truth               # the scans' answers were kept
    assert not [s for s in scans if s in SYMBOLS], scans
