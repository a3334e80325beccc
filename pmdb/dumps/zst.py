"""Zstandard-compressed dumps (``vmcore.elf.zst``): decompressed once into a cache file.

A dump format needs random access, which a zstd stream cannot give, so the file
is streamed (never held in memory) into ``$PMDB_CACHE_DIR``, else
``$XDG_CACHE_HOME/pmdb``, else ``~/.cache/pmdb``. The cache name carries the
source's size and mtime, so a changed file is decompressed again and an
unchanged one only once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from pmdb.errors import FormatError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20

Notify = Callable[[str], None]


def is_zstd(head: bytes) -> bool:
    return head[:4] == ZSTD_MAGIC


def cache_dir() -> Path:
    """Where decompressed dumps live; an environment override first (tests, CI)."""
    explicit = os.environ.get("PMDB_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pmdb"


def cache_path(path: str, directory: Path | None = None) -> Path:
    """The cache file for ``path``: readable name, plus a key of path, size and mtime."""
    st = os.stat(path)
    stem = os.path.basename(path)
    if stem.endswith(".zst"):
        stem = stem[:-4]
    key = f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    return (directory or cache_dir()) / f"{stem}.{digest}"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def decompressed(path: str, directory: Path | None = None, notify: Notify | None = _stderr) -> str:
    """The path of the decompressed copy of ``path``, making it on first use."""
    try:
        target = cache_path(path, directory)
    except OSError as err:
        raise FormatError(f"{path}: {err.strerror}") from None
    if target.is_file():
        return str(target)
    try:
        import zstandard
    except ImportError:
        raise FormatError(f"{os.path.basename(path)} is zstd-compressed and the zstandard module is "
                          f"missing: pip install zstandard, or run `zstd -d {path}`") from None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FormatError(f"cannot create the cache directory {target.parent}: {err.strerror}") from None
    want = _check_room(path, target.parent, zstandard)
    if notify is not None:
        size = os.path.getsize(path)
        notify(f"pmdb: decompressing {os.path.basename(path)} ({size / 1e6:.0f} MB) into "
               f"{target} once; later runs reuse it")
    _stream(path, target, zstandard, want)
    return str(target)


def _check_room(path: str, directory: Path, zstandard: object) -> int:
    """The size the first frame announces (-1: unknown); refuse early if it cannot fit."""
    with open(path, "rb") as f:
        head = f.read(18)
    if not is_zstd(head):
        raise FormatError(f"{os.path.basename(path)}: not zstd data")
    try:
        want = zstandard.frame_content_size(head)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a header we cannot size is checked while streaming
        return -1
    free = shutil.disk_usage(directory).free
    if want > 0 and want > free:
        raise FormatError(f"{os.path.basename(path)} decompresses to {want / 1e6:.0f} MB but only "
                          f"{free / 1e6:.0f} MB are free in {directory}")
    return int(want)


def _stream(path: str, target: Path, zstandard: object, want: int) -> None:
    """Decompress into a temporary name, then rename: a partial file is never reused.

    The reader bounds each output block (a run of zeros may expand a thousandfold),
    but it ends quietly on a truncated frame: the size the frame announced tells.
    """
    tmp = target.with_name(f"{target.name}.part{os.getpid()}")
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            dctx = zstandard.ZstdDecompressor()  # type: ignore[attr-defined]
            reader = dctx.stream_reader(src, read_across_frames=True)
            got = 0
            while True:
                block = reader.read(CHUNK)
                if not block:
                    break
                dst.write(block)
                got += len(block)
        if 0 <= want and got < want:
            raise zstandard.ZstdError(f"truncated: {got} of {want} bytes")  # type: ignore[attr-defined]
        os.replace(tmp, target)
    except OSError as err:
        _unlink(tmp)
        raise FormatError(f"cannot decompress {os.path.basename(path)} into {target.parent}: "
                          f"{err.strerror or err}") from None
    except zstandard.ZstdError as err:  # type: ignore[attr-defined]
        _unlink(tmp)
        raise FormatError(f"{os.path.basename(path)}: corrupt or truncated zstd data ({err})") from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass
