"""The cache of decompressed .zst dumps: keyed by content, bounded, never a half-written file.

The dumps are real: the fixture's compressed kdump, zstd-packed at test time
(a 16 MB dump packs in well under a second), and opened through pmdb's reader.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pmdb.cache import PART, Cache, content_key
from pmdb.config import Config
from pmdb.dumps import zst
from pmdb.dumps.kdump import KdumpFile
from pmdb.dumps.vmcore import sniff_vmcore
from pmdb.errors import FormatError
from pmdb.opener import open_target
from pmdb.progress import BarProgress, LineProgress, for_stream
from tests.conftest import FIXTURES, need_fixture

KDUMP = FIXTURES / "linux-6.1-x86_64" / "dump.202611221942"
NOKASLR = FIXTURES / "linux-6.1-x86_64-nokaslr" / "dump.202611221946"


def pack(src: Path, out: Path, announce: bool = False) -> Path:
    """``src`` zstd-compressed; with ``announce`` the frame says its size, as `zstd FILE` writes."""
    import zstandard

    with open(src, "rb") as f, open(out, "wb") as dst:
        size = src.stat().st_size if announce else -1
        zstandard.ZstdCompressor(level=1, write_content_size=True).copy_stream(f, dst, size=size)
    return out


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack(need_fixture(KDUMP), tmp_path_factory.mktemp("zst") / "dump.202611221942.zst")


def cached_files(cache: Cache) -> list[Path]:
    return sorted(p for p in cache.directory.rglob("*") if p.is_file())


def test_symlink_and_copy_share_one_file(packed: Path, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    link = tmp_path / "link.zst"
    link.symlink_to(packed)
    copy = tmp_path / "elsewhere" / "renamed.zst"
    copy.parent.mkdir()
    shutil.copy(packed, copy)
    paths = {zst.decompressed(str(p), cache) for p in (packed, link, copy)}
    assert len(paths) == 1 and cached_files(cache) == [Path(paths.pop())]
    assert cached_files(cache)[0].read_bytes() == need_fixture(KDUMP).read_bytes()


def test_changed_content_is_a_new_entry(packed: Path, tmp_path: Path) -> None:
    """Same size and name, one byte different in the middle of the head: another key."""
    other = tmp_path / packed.name
    data = bytearray(packed.read_bytes())
    other.write_bytes(data)
    assert content_key(str(other)) == content_key(str(packed))
    data[4096] ^= 0xFF
    other.write_bytes(data)
    assert content_key(str(other)) != content_key(str(packed))


@pytest.mark.parametrize("announce", [False, True], ids=["size-unknown", "size-announced"])
def test_bounded_least_recently_used_out(packed: Path, tmp_path: Path, announce: bool) -> None:
    """With room for one dump, a second real dump pushes out the first; reopening the first
    pushes out the second, and what is in use is never removed."""
    if announce:
        packed = pack(need_fixture(KDUMP), tmp_path / "announced.zst", announce=True)
    second = pack(need_fixture(NOKASLR), tmp_path / "nokaslr.zst", announce)
    size = max(need_fixture(KDUMP).stat().st_size, need_fixture(NOKASLR).stat().st_size)
    cache = Cache(tmp_path / "cache", max_bytes=size + size // 2)
    first = Path(zst.decompressed(str(packed), cache))
    other = Path(zst.decompressed(str(second), cache))
    assert cached_files(cache) == [other] and not first.exists()
    assert Path(zst.decompressed(str(packed), cache)) == first
    assert cached_files(cache) == [first]
    small = Cache(cache.directory, max_bytes=size * 3)     # room for both: nothing goes
    zst.decompressed(str(second), small)
    assert cached_files(small) == sorted([first, other])


@pytest.mark.parametrize("announce", [False, True], ids=["size-unknown", "size-announced"])
def test_too_big_for_the_limit_says_which_option(tmp_path: Path, announce: bool) -> None:
    packed = pack(need_fixture(KDUMP), tmp_path / "dump.zst", announce)
    cache = Cache(tmp_path / "cache", max_bytes=1 << 20)
    with pytest.raises(FormatError, match="cache.max_size_mb") as info:
        zst.decompressed(str(packed), cache)
    assert "\n" not in str(info.value) and cached_files(cache) == []


class Interrupt:
    """A progress that is ^C'd after the first block."""

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        raise KeyboardInterrupt

    def finish(self) -> None:
        pass


def test_interrupted_write_is_never_used(packed: Path, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        zst.decompressed(str(packed), cache, Interrupt())
    assert cached_files(cache) == []
    dump = sniff_vmcore(str(packed), cache)
    assert isinstance(dump, KdumpFile) and dump.utsname["release"].startswith("6.1.0")


def test_stale_partial_file_is_removed_live_one_kept(packed: Path, tmp_path: Path) -> None:
    """A killed writer's partial file goes at the next write; a running writer's stays."""
    cache = Cache(tmp_path / "cache")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = cache.path("dumps", f".zst-x{PART}{dead}")
    live = cache.path("dumps", f".zst-y{PART}{os.getpid()}")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    zst.decompressed(str(packed), cache)
    assert not stale.exists() and live.exists()


def test_damaged_cache_file_is_made_again(packed: Path, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    path = Path(zst.decompressed(str(packed), cache))
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    assert Path(zst.decompressed(str(packed), cache)) == path
    assert path.read_bytes() == need_fixture(KDUMP).read_bytes()


def test_open_target_uses_the_configured_cache(packed: Path, tmp_path: Path) -> None:
    config = Config({"cache.directory": str(tmp_path / "mine"), "cache.max_size_mb": 64})
    said = io.StringIO()
    target = open_target(str(packed), config=config, progress=LineProgress(said))
    assert target.kind == "vmcore" and "decompressing" in said.getvalue()
    assert [p.parent.name for p in cached_files(Cache(tmp_path / "mine"))].count("dumps") == 1


def test_progress_is_a_bar_on_a_terminal_and_a_line_elsewhere(packed: Path, tmp_path: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(for_stream(Tty()), BarProgress)
    assert isinstance(for_stream(io.StringIO()), LineProgress)
    screen = io.StringIO()
    zst.decompressed(str(packed), Cache(tmp_path / "cache"), BarProgress(screen, force_terminal=True))
    shown = screen.getvalue()
    assert "decompressing dump.202611221942.zst" in shown
    assert "━" in shown and "MB" in shown            # the bar, with bytes done


def test_cli_shows_the_bar_on_a_terminal(packed: Path, tmp_path: Path) -> None:
    """Through the real command on a pty: the bar appears while the dump decompresses."""
    import pty

    env = dict(os.environ, PMDB_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="100")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(sys.executable, [sys.executable, "-m", "pmdb", "-q", str(packed), "-e", "::status"],
                   env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "decompressing dump.202611221942.zst" in text and "━" in text
    assert "RELEASE: 6.1.0-56-amd64" in text


def test_a_settled_files_key_is_worked_out_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file unchanged for a while is hashed once per process (a vmlinux's key is asked for
    by each of its caches); one just written is hashed each time (its next change could keep
    its size and coarse mtime)."""
    import pmdb.cache as cache_module

    hashed: list[int] = []
    real = cache_module.hashlib.sha256

    def counting(*args):  # type: ignore[no-untyped-def]
        hashed.append(1)
        return real(*args)

    monkeypatch.setattr(cache_module.hashlib, "sha256", counting)
    fresh, settled = tmp_path / "fresh", tmp_path / "settled"
    for f in (fresh, settled):
        f.write_bytes(os.urandom(3 << 20))
    old = time.time() - 3600
    os.utime(settled, (old, old))
    keys = {content_key(str(settled)) for _ in range(3)}
    assert len(keys) == 1 and len(hashed) == 1
    fresh_keys = {content_key(str(fresh)) for _ in range(3)}
    assert len(fresh_keys) == 1 and len(hashed) == 4 and fresh_keys != keys
