"""pmdb.codecache: dataclasses' generated methods run from kept code, identical to compiling.

Each case runs fresh interpreters (the cache is installed by ``import pmdb`` and saved at
exit) with a bytecode prefix and a cache directory of their own, so the files they share are
the test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# imports what a kernel session does, then reports how the cache fared and checks that the
# classes behave as dataclasses: fields, equality, repr, a frozen class refusing a change
_PROBE = """
import dataclasses, json, sys
import pmdb, pmdb.cli, pmdb.opener
from pmdb import codecache
from pmdb.language.ast import Num, Sym
from pmdb.cache import Cache
cc = codecache.install()
assert Num(5) == Num(5) and Num(5) != Num(6) and repr(Sym("jiffies")) == "Sym(name='jiffies', module=None, offset=0)"
try:
    Num(5).value = 6
except dataclasses.FrozenInstanceError:
    pass
else:
    raise SystemExit("a frozen dataclass took a change")
assert Cache(directory="x").max_bytes > 0
print(json.dumps({"path": str(codecache.cache_path()), "known": len(cc.known), "compiled": cc.compiled}))
"""


def _probe(prefix: Path, **env: str) -> dict[str, object]:
    full = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    full.update(PYTHONPYCACHEPREFIX=str(prefix), PMDB_CACHE_DIR=str(prefix / "cache"), **env)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=full,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_a_second_start_compiles_nothing(tmp_path: Path) -> None:
    first = _probe(tmp_path)
    path = Path(str(first["path"]))
    assert path.is_relative_to(tmp_path) and path.exists()
    assert isinstance(first["compiled"], int) and first["compiled"] > 100   # a session's worth
    second = _probe(tmp_path)
    assert second["compiled"] == 0 and second["known"] == first["known"]


def test_kept_code_is_what_compiling_gives(tmp_path: Path) -> None:
    """Every kept code object equals a fresh compile of its text (code compares by value:
    bytecode, constants, names)."""
    import marshal

    from pmdb.seal import unsealed

    path = Path(str(_probe(tmp_path)["path"]))
    payload = unsealed(b"pmdbdc01", path.read_bytes())
    assert payload is not None
    version, codes = marshal.loads(payload)
    assert version == sys.hexversion and len(codes) > 100
    for source, code in codes.items():
        assert code == compile(source, "<string>", "exec"), source


def test_a_damaged_file_is_replaced(tmp_path: Path) -> None:
    path = Path(str(_probe(tmp_path)["path"]))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    again = _probe(tmp_path)
    assert isinstance(again["compiled"], int) and again["compiled"] > 100    # not trusted
    assert _probe(tmp_path)["compiled"] == 0                                 # rewritten whole


@pytest.mark.parametrize("cut", [0, 12, 100])
def test_a_cut_file_is_ignored(tmp_path: Path, cut: int) -> None:
    path = Path(str(_probe(tmp_path)["path"]))
    path.write_bytes(path.read_bytes()[:cut])
    assert _probe(tmp_path)["compiled"] != 0


def test_nothing_is_written_without_bytecode(tmp_path: Path) -> None:
    result = _probe(tmp_path, PYTHONDONTWRITEBYTECODE="1")
    assert not Path(str(result["path"])).exists()


def test_the_file_keeps_what_was_used_once_it_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pmdb import codecache

    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = tmp_path / "code.bin"
    old = codecache.CodeCache(path)
    for i in range(5):
        old.code(f"x{i} = {i}")
    old.save()
    monkeypatch.setattr(codecache, "MAX_ENTRIES", 3)
    later = codecache.CodeCache(path)
    assert len(later.known) == 5 and later.compiled == 0
    later.code("x0 = 0")                 # kept
    later.code("y = 1")                  # new: the file is written again, with what was used
    later.save()
    assert set(codecache.CodeCache(path).known) == {"x0 = 0", "y = 1"}


def test_a_read_only_install_keeps_its_code_in_the_cache_directory(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the first path cannot be written (a root-owned site-packages), the second is."""
    from pmdb import codecache

    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    blocked = tmp_path / "ro"
    blocked.write_text("a file, so nothing can be made below it")
    first, second = blocked / "__pycache__" / "code.bin", tmp_path / "cache" / "python" / "code.bin"
    cc = codecache.CodeCache(first, second)
    cc.code("z = 1")
    cc.save()
    assert not first.exists() and second.exists()
    again = codecache.CodeCache(first, second)
    assert set(again.known) == {"z = 1"} and again.compiled == 0
