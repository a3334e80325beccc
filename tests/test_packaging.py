"""pmdb installs anywhere Python runs: every runtime dependency comes as a wheel.

A fresh venv installs exactly pyproject.toml's runtime dependencies with
``--only-binary=:all:`` (no compiler, no headers), then imports each one, and the
lzo kdump pages decompress through the installed LZO library.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

# pip's words for "there is no network here" (anything else is a real failure)
OFFLINE = re.compile(r"NewConnectionError|Network is unreachable|Temporary failure in name resolution|"
                     r"No route to host|Connection refused")

# distribution -> the module it provides
MODULES = {"prompt_toolkit": "prompt_toolkit", "pygments": "pygments", "rich": "rich",
           "capstone": "capstone", "pyelftools": "elftools", "unicorn": "unicorn",
           "zstandard": "zstandard", "cramjam": "cramjam", "lzallright": "lzallright", "deflate": "deflate",
           "dask": "distributed", "plotly": "plotly", "numpy": "numpy"}   # dask[distributed]: its extra's module


def runtime_dependencies() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def distribution(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("-", "_")


def test_every_dependency_is_known_here() -> None:
    """A new dependency must be added to MODULES, so the wheel test below imports it."""
    assert sorted(distribution(r) for r in runtime_dependencies()) == sorted(MODULES)


def test_runtime_dependencies_install_from_wheels_only(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--only-binary=:all:",
                           *runtime_dependencies()], capture_output=True, text=True, env=env,
                          timeout=900)
    if done.returncode != 0 and OFFLINE.search(done.stderr):
        if os.environ.get("PMDB_REQUIRE_FIXTURES") == "1":
            pytest.fail(f"the package index is unreachable: {done.stderr.strip()[-400:]}")
        pytest.skip("the package index is unreachable")
    assert done.returncode == 0, done.stderr[-2000:]
    probe = ("import importlib, sys\n"
             f"for m in {sorted(MODULES.values())!r}: importlib.import_module(m)\n"
             "from lzallright import LZOCompressor\n"
             "page = bytes(range(256)) * 16\n"
             "assert LZOCompressor.decompress(LZOCompressor().compress(page), "
             "output_size_hint=4096) == page\n")
    check = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_every_package_is_listed_for_installation() -> None:
    """pyproject.toml lists packages explicitly: a package left out is missing from an
    installed (non-editable) pmdb."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "pmdb").rglob("__init__.py")}
    assert on_disk - listed == set()
