"""Zstandard-compressed dumps (``vmcore.elf.zst``): decompressed once into the cache.

A dump format needs random access, which a zstd stream cannot give, so the file
is streamed (never held in memory) into pmdb's cache directory (pmdb/cache.py),
under a name keyed by the compressed file's content: the same dump opened through
a symlink or a copy is decompressed once.
"""

from __future__ import annotations

import os
from pathlib import Path

from pmdb.cache import Cache, content_key
from pmdb.errors import FormatError
from pmdb.progress import NoProgress, Progress

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20


def is_zstd(head: bytes) -> bool:
    return head[:4] == ZSTD_MAGIC


def cache_stem(path: str, cache: Cache) -> Path:
    """The cache entry for ``path``, named by its content."""
    return cache.path("dumps", f"zst-{content_key(path)}")


def decompressed(path: str, cache: Cache | None = None, progress: Progress | None = None) -> str:
    """The path of the decompressed copy of ``path``, making it on first use."""
    cache = cache or Cache.default()
    name = os.path.basename(path)
    try:
        stem = cache_stem(path, cache)
        want = _announced_size(path)
    except OSError as err:
        raise FormatError(f"{path}: {err.strerror}") from None
    found = cache.find(stem)
    if found is not None:
        return str(found)
    packed = os.path.getsize(path)
    what = f"decompressing {name}"
    cache.check_fits(want, what)
    cache.make_room(max(want, packed))             # unknown size: at least the packed size
    _check_room(name, cache.directory, want)
    progress = progress or NoProgress()
    progress.start(f"{what} ({packed / 1e6:.0f} MB) into {cache.directory} once; later runs reuse it",
                   packed)
    try:
        target = _stream(path, stem, cache, want, progress)
    finally:
        progress.finish()
    size = target.stat().st_size                   # known now even where the frame did not say
    if size > cache.max_bytes:
        target.unlink()
        cache.check_fits(size, what)
    cache.make_room(0, keep=target)
    return str(target)


def _announced_size(path: str) -> int:
    """The decompressed size the first frame announces (-1: unknown)."""
    import zstandard

    with open(path, "rb") as f:
        head = f.read(18)
    if not is_zstd(head):
        raise FormatError(f"{os.path.basename(path)}: not zstd data")
    try:
        return int(zstandard.frame_content_size(head))
    except zstandard.ZstdError:
        return -1           # a header we cannot size is checked while streaming


def _check_room(name: str, directory: Path, want: int) -> None:
    """Refuse early when the disk cannot hold what the frame announces."""
    directory.mkdir(parents=True, exist_ok=True)
    import shutil  # only for a .zst dump (shutil imports bz2 and lzma)

    free = shutil.disk_usage(directory).free
    if want > 0 and want > free:
        raise FormatError(f"{name} decompresses to {want / 1e6:.0f} MB but only "
                          f"{free / 1e6:.0f} MB are free in {directory}")


def _stream(path: str, stem: Path, cache: Cache, want: int, progress: Progress) -> Path:
    """Decompress through the cache's atomic writer: a partial file is never reused.

    The reader bounds each output block (a run of zeros may expand a thousandfold),
    but it ends quietly on a truncated frame: the size the frame announced tells.
    """
    import zstandard

    name = os.path.basename(path)
    try:
        with open(path, "rb") as src, cache.writing(stem) as pending:
            reader = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
            got, consumed = 0, 0
            while block := reader.read(CHUNK):
                pending.file.write(block)
                got += len(block)
                progress.advance(src.tell() - consumed)
                consumed = src.tell()
            if 0 <= want and got < want:
                raise zstandard.ZstdError(f"truncated: {got} of {want} bytes")
        assert pending.path is not None
        return pending.path
    except OSError as err:
        raise FormatError(f"cannot decompress {name} into {stem.parent}: "
                          f"{err.strerror or err}") from None
    except zstandard.ZstdError as err:
        raise FormatError(f"{name}: corrupt or truncated zstd data ({err})") from None
