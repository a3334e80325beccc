"""The bundled demo dump that ``pmdb --demo`` opens.

A small real user core (and its executable beside it, found by basename), rebuilt
by tests/data/demo/make-demo.sh. Later the demo becomes a kernel dump; callers
only ever go through demo_path() and BANNER.
"""

from __future__ import annotations

from pathlib import Path

from pmdb.errors import FormatError

BANNER = """\
pmdb demo: a threaded program that crashed with SIGSEGV. Try:
  ::status                       what happened
  $c                             the crashed thread's stack
  ::walk thread | ::findstack    every thread's stack
  g_config::print struct config  the global configuration
  ::help                         every command ($q quits)"""


def demo_path() -> str:
    """The demo core's path inside the installed package."""
    path = Path(__file__).resolve().parent / "pmdb-demo.core"
    if not path.is_file():
        raise FormatError(f"the demo dump is missing from this installation ({path})")
    return str(path)
