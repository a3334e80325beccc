"""Shared test plumbing: where ../shared/fixtures is, and skipping (or failing) without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI (which sets CI=true) draws the same hypothesis examples every run, so a submission passes
# or fails on its own merits; a developer's runs keep exploring new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# kernel-dump fixtures (kernel, any_kernel) shared by the kernel-memory test modules
pytest_plugins = ["tests.linux_vmcore"]

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PMDB_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"
USER_CORES = FIXTURES / "user-cores"


def need_fixture(path: Path) -> Path:
    """The fixture path; skip when absent, or fail when PMDB_REQUIRE_FIXTURES=1 (CI)."""
    if not path.exists():
        if os.environ.get("PMDB_REQUIRE_FIXTURES") == "1":
            pytest.fail(f"required fixture missing: {path}")
        pytest.skip(f"fixture not available: {path} (../shared is absent)")
    return path


def need_tools(reason: str) -> None:
    """Skip for missing host tools, or fail when PMDB_REQUIRE_FIXTURES=1 (CI installs them)."""
    if os.environ.get("PMDB_REQUIRE_FIXTURES") == "1":
        pytest.fail(f"required tools missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def user_cores() -> Path:
    return need_fixture(USER_CORES)
