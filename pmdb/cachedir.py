"""Where pmdb's cache directory is, apart from pmdb.cache so code that runs before any
dataclass exists (pmdb.codecache) can find it too."""

from __future__ import annotations

import os
from pathlib import Path


def default_directory() -> Path:
    """$PMDB_CACHE_DIR, else $XDG_CACHE_HOME/pmdb, else ~/.cache/pmdb."""
    explicit = os.environ.get("PMDB_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pmdb"
