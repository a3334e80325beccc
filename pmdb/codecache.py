"""The compiled code of dataclasses' generated methods, kept beside pmdb's bytecode.

Python 3.11's dataclasses compile every method they generate (``__init__``, ``__repr__``,
``__eq__``, ``__hash__``, a frozen class's ``__setattr__`` ...) from source text each time a
class is created: ~0.1 ms a method, ~380 methods and ~40 ms of a kernel session's start, a
fifth of it. Like a module's ``.pyc``, the code compiled from each text is kept in pmdb's
``__pycache__`` (or under ``PYTHONPYCACHEPREFIX``; where pmdb is installed read-only, in
pmdb's cache directory instead; nothing is written when bytecode is not,
``PYTHONDONTWRITEBYTECODE``), keyed by the exact text and the Python build, and a later start
runs that code instead of compiling the text again. What a class gets is the same code
either way: only the compile is skipped.

Installed by ``import pmdb``, before any of its modules defines a class, so it imports
nothing of pmdb but the seal check and where the cache directory is. The file is sealed (a
damaged one is ignored, then replaced) and bounded: when it would hold more than
``MAX_ENTRIES`` texts (classes that changed over many versions of pmdb), it keeps only those
this process used.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import dataclasses
import marshal
import os
import sys
from importlib.util import cache_from_source
from pathlib import Path
from types import CodeType
from typing import Any

from pmdb.cachedir import default_directory
from pmdb.seal import sealed, unsealed

KIND = b"pmdbdc01"       # bump the number when the payload's layout changes
MAX_ENTRIES = 4096


class CodeCache:
    """Source text -> code, loaded from the first of ``paths`` that holds a sound file and
    written back, to the first that can be written, when it grew."""

    def __init__(self, *paths: Path) -> None:
        self.paths = paths
        self.known: dict[str, CodeType] = {}
        self.used: set[str] = set()
        self.compiled = 0           # texts compiled by this process (not found in the file)
        for path in paths:
            if self._load(path):
                break

    def code(self, source: str) -> CodeType:
        """The code of ``source`` (compiled as ``exec`` compiles it), compiled once."""
        found = self.known.get(source)
        if found is None:
            found = self.known[source] = compile(source, "<string>", "exec")
            self.compiled += 1
        self.used.add(source)
        return found

    def exec(self, source: Any, globals: Any = None, locals: Any = None, /) -> None:
        """``exec`` as dataclasses call it, from kept code when ``source`` is a text."""
        builtins.exec(self.code(source) if isinstance(source, str) else source, globals, locals)

    def _load(self, path: Path) -> bool:
        try:
            payload = unsealed(KIND, path.read_bytes())
            kept = marshal.loads(payload) if payload is not None else None
        except (OSError, ValueError, EOFError, TypeError):
            return False
        if not (isinstance(kept, tuple) and len(kept) == 2 and kept[0] == sys.hexversion
                and isinstance(kept[1], dict)):
            return False
        codes = kept[1]
        if not all(isinstance(k, str) and isinstance(v, CodeType) for k, v in codes.items()):
            return False
        self.known = codes
        return True

    def save(self) -> None:
        """Write the texts back when this process compiled any (best effort, atomic)."""
        if not self.compiled or sys.dont_write_bytecode:
            return
        codes = self.known
        if len(codes) > MAX_ENTRIES:
            codes = {k: v for k, v in codes.items() if k in self.used}
        data = sealed(KIND, marshal.dumps((sys.hexversion, codes)))
        for path in self.paths:
            if _write(path, data):
                return


def _write(path: Path, data: bytes) -> bool:
    """``data`` as the file ``path``, whole or not at all; False when it cannot be written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False


def cache_path() -> Path:
    """Where the code is kept: as a .pyc of this package would be, with its own suffix."""
    pyc = Path(cache_from_source(str(Path(__file__).with_name("_dataclass_code.py"))))
    return pyc.with_suffix(".bin")


def fallback_path() -> Path:
    """Where it is kept when pmdb is installed where its user cannot write."""
    return default_directory() / "python" / cache_path().name


_installed: CodeCache | None = None


def install() -> CodeCache:
    """Make dataclasses compile through the cache (once per process); saved at exit."""
    global _installed
    if _installed is None:
        _installed = CodeCache(cache_path(), fallback_path())
        dataclasses.exec = _installed.exec      # type: ignore[attr-defined]  # their global name
        atexit.register(_installed.save)
    return _installed
