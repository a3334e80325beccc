"""pmdb's cache directory: files derived from dumps, keyed by content, bounded in size.

What goes here (decompressed ``.zst`` dumps, a kernel build's BTF) is keyed by
what the source *is*, never by where it lies, so a dump opened through a symlink
or a copy reuses one file. Files are written under a temporary name and renamed
into place with their size in the name (``STEM.SIZE``), so neither a half-written
file (^C, a full disk, a killed process) nor one cut short later is ever taken
for a finished one. The directory is kept under a size limit by removing the
least recently used files first; a file is marked used each time it is found.

Low layer: imports nothing from pmdb but the errors, the seal of its entries and where
the directory is (pmdb.cachedir).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pmdb.cachedir import default_directory
from pmdb.errors import FormatError
from pmdb.seal import sealed, sealed_parts, unsealed

HEAD_TAIL = 1 << 20          # bytes hashed at each end of a file for its content key
DEFAULT_MAX_MB = 32768
PART = ".part"

__all__ = ["Cache", "Pending", "content_key", "default_directory", "sealed", "sealed_parts", "unsealed"]


@dataclass(frozen=True)
class Cache:
    """Where derived files live and how much room they may take."""

    directory: Path
    max_bytes: int = DEFAULT_MAX_MB << 20

    @classmethod
    def default(cls) -> Cache:
        return cls(default_directory())

    def path(self, *parts: str) -> Path:
        return self.directory.joinpath(*parts)

    def find(self, stem: Path) -> Path | None:
        """The finished entry ``STEM.SIZE`` whose size is what its name says; marks it used.

        One of another size was damaged after it was written: it is removed.
        """
        try:
            candidates = list(stem.parent.glob(f"{stem.name}.*"))
        except OSError:
            return None
        for path in candidates:
            size = path.name.rsplit(".", 1)[-1]
            try:
                good = int(size, 16) == path.stat().st_size
            except (OSError, ValueError):
                continue
            if not good:
                _unlink(path)
                continue
            with contextlib.suppress(OSError):
                os.utime(path)          # least recently used goes first
            return path
        return None

    def check_fits(self, need: int, what: str) -> None:
        """FormatError when ``need`` bytes alone are more than the cache may hold."""
        if need > self.max_bytes:
            raise FormatError(f"{what} needs {need / 1e6:.0f} MB, more than the cache may hold "
                              f"({self.max_bytes / 1e6:.0f} MB): raise cache.max_size_mb in "
                              f"pmdb.toml, or decompress it yourself")

    def make_room(self, need: int, keep: Path | None = None) -> None:
        """Remove the least recently used files (never ``keep``) until ``need`` more bytes fit."""
        files = sorted(self._files(), key=lambda item: item[1].st_mtime)
        total = sum(st.st_size for _, st in files)
        for path, st in files:
            if total + need <= self.max_bytes:
                break
            if path != keep and _unlink(path):
                total -= st.st_size

    def _files(self) -> list[tuple[Path, os.stat_result]]:
        """Every finished file below the directory; stale partial files are removed on the way."""
        out: list[tuple[Path, os.stat_result]] = []
        for root, _dirs, names in os.walk(self.directory):
            for name in names:
                path = Path(root, name)
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if PART in name:
                    if not _writer_alive(name):
                        _unlink(path)
                    continue
                out.append((path, st))
        return out

    def discard(self, stem: Path) -> None:
        """Remove the entries of ``stem`` (before an entry of another size replaces them)."""
        with contextlib.suppress(OSError):
            for path in stem.parent.glob(f"{stem.name}.*"):
                _unlink(path)

    def store(self, stem: Path, data: bytes | Sequence[bytes | memoryview]) -> None:
        """Best effort: write ``data`` (or its parts, one after another) as the entry
        ``STEM.SIZE`` after making room; a cache that cannot be written only costs the work
        again next time."""
        parts = [data] if isinstance(data, bytes) else data
        try:
            self.make_room(sum(memoryview(p).nbytes for p in parts))
            with self.writing(stem) as pending:
                for part in parts:
                    pending.file.write(part)
        except (OSError, FormatError):
            pass

    @contextlib.contextmanager
    def writing(self, stem: Path) -> Iterator[Pending]:
        """A file to fill; only if the block ends without an exception does it become the
        entry ``STEM.SIZE`` (its path then in ``pending.path``)."""
        try:
            stem.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FormatError(f"cannot create the cache directory {stem.parent}: "
                              f"{err.strerror}") from None
        tmp = stem.with_name(f".{stem.name}{PART}{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                pending = Pending(f)
                yield pending
                size = f.tell()
            pending.path = stem.with_name(f"{stem.name}.{size:x}")
            os.replace(tmp, pending.path)
        except BaseException:
            _unlink(tmp)
            raise


@dataclass
class Pending:
    """A cache entry being written: the open file, then where it landed."""

    file: BinaryIO
    path: Path | None = None


_KEYS: dict[tuple[int, int, int, int], str] = {}   # (device, inode, size, mtime) -> content key
_SETTLED_NS = 5_000_000_000                        # unchanged this long: its stat stands for it


def content_key(path: str) -> str:
    """Size plus a hash of the first and last MiB: equal for a file and its copies, different
    for a changed dump (a dump's head holds its headers and notes, which differ between dumps).
    Worked out once per process for a file that stays as it was (a vmlinux's is asked for by
    its name index, its scan cut short and its line tables: ~3 ms each time); as git does with
    its index, not for a file changed in the last seconds, whose next change could keep its
    size and its (coarse) modification time."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        known = _KEYS.get(stamp)
        if known is not None:
            return known
        h = hashlib.sha256()
        size = st.st_size
        h.update(f.read(HEAD_TAIL))
        if size > HEAD_TAIL:
            f.seek(max(HEAD_TAIL, size - HEAD_TAIL))
            h.update(f.read(HEAD_TAIL))
    key = f"{size:x}-{h.hexdigest()[:24]}"
    if time.time_ns() - st.st_mtime_ns > _SETTLED_NS:
        _KEYS[stamp] = key
    return key


def _writer_alive(name: str) -> bool:
    """A partial file's writer (the pid after '.part') still runs: its file is not stale."""
    pid_text = name.rsplit(PART, 1)[-1]
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass            # another user's process: leave its file alone
    return True


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:
        return False

