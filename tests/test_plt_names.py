"""PLT stubs are named ``function@plt`` exactly where objdump -d names them (issue 15)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pmdb.symbols.objfile import ObjectFile
from tests.conftest import need_tools
from tests.cores import NORETURN_C

_LIBS = ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib32/libc.so.6", "/usr/bin/bash"]


def _objdump_plt(path: Path | str) -> dict[int, str]:
    text = subprocess.run(["objdump", "-d", str(path)], capture_output=True, text=True,
                          check=True, timeout=300).stdout
    return {int(m.group(1), 16): m.group(2)
            for m in re.finditer(r"^([0-9a-f]+) <(.*@plt)>:$", text, re.M)}


def _ours(path: Path | str) -> dict[int, str]:
    obj = ObjectFile(str(path))
    try:
        return {s.addr: s.name for s in obj.symbols() if s.name.endswith("@plt")}
    finally:
        obj.close()


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("pie", [True, False])
def test_plt_stubs_of_built_programs(tmp_path: Path, bits: int, pie: bool) -> None:
    """PIE and non-PIE, 64- and 32-bit (i386 PIC stubs jump through %ebx), stripped."""
    if not (shutil.which("gcc") and shutil.which("objdump")):
        need_tools("needs gcc and objdump")
    exe = tmp_path / "nr"
    cmd = ["gcc", f"-m{bits}", "-O2", "-pthread", "-s", "-o", str(exe), str(NORETURN_C)]
    cmd.insert(1, "-pie" if pie else "-no-pie")
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    want = _objdump_plt(exe)
    assert "abort@plt" in want.values()
    assert _ours(exe) == want


@pytest.mark.parametrize("path", _LIBS)
def test_plt_stubs_of_system_files(path: str) -> None:
    """libc's ifunc slots too (``*ABS*+0x9f4a0@plt``, i386 ``*ABS*@plt``)."""
    if not Path(path).exists() or not shutil.which("objdump"):
        need_tools(f"needs {path} and objdump")
    assert _ours(path) == _objdump_plt(path)
