"""Plumbing every lab step shares: the cache root, stderr progress, one-line errors, atomic dirs.

A step that fails raises LabError with one line saying what failed and where to look; the CLI
prints that line and exits 1, so CI logs show the cause without a traceback to dig through.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

MIRROR = "http://deb.debian.org"


class LabError(Exception):
    """A lab step failed; the message is the one line the user sees."""


def cache_root() -> Path:
    """The lab cache (never in git): $PMDB_LAB_CACHE, else ~/.cache/pmdb-lab."""
    env = os.environ.get("PMDB_LAB_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "pmdb-lab"
    root.mkdir(parents=True, exist_ok=True)
    return root


def say(msg: str) -> None:
    """Progress on stderr, so stdout stays for answers (paths, lists) that scripts read."""
    print(f"[vmlab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str | os.PathLike[str]], what: str, log: Path | None = None,
        cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run a command; on failure raise one line naming the step and the log to read."""
    args = [str(c) for c in cmd]
    try:
        if log is None:
            proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
                raise LabError(f"{what} failed (exit {proc.returncode}): {tail[0]}")
            return
        with open(log, "ab") as out:
            rc = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    except FileNotFoundError as e:
        raise LabError(f"{what} failed: {args[0]} is not installed") from e
    if rc != 0:
        raise LabError(f"{what} failed (exit {rc}); see {log}")


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """A temp dir next to `final`, renamed onto it only when the block succeeds.

    So a finished cache entry is either whole or absent: an interrupted run leaves only a
    `.tmp-*` dir, which the next run removes; a failed one leaves its logs in `.failed-*`.
    """
    tmp = final.with_name(f".tmp-{final.name}")
    failed = final.with_name(f".failed-{final.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except LabError as e:
        # keep the logs (console.log, build logs) where the message points; drop big dumps
        shutil.rmtree(failed, ignore_errors=True)
        for dump in tmp.glob("vmcore*"):
            dump.unlink()
        tmp.rename(failed)
        raise LabError(str(e).replace(str(tmp), str(failed))) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(failed, ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def need_tool(name: str, package: str) -> None:
    """Fail early, naming the Debian package, when a host tool is missing."""
    if shutil.which(name) is None:
        raise LabError(f"{name} not found: apt-get install {package}")
