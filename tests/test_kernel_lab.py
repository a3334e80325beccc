"""pmdb on the kernel lab's dumps against the guest's own /proc and console (kernel_truth).

Every Debian kernel line the lab pins, from 5.10 (whose VMCOREINFO does not name kallsyms,
so these dumps test the scan of the kernel image too) to 7.2, with the sysrq and null
scenarios (and 5.10's bug and divide). Every answer is compared with what the guest
recorded, never with a number written here. Skipped when the lab has not made the dumps
(PMDB_LAB_CACHE says where they are); PMDB_REQUIRE_FIXTURES=1 (CI, which makes them first)
or PMDB_REQUIRE_LAB_DUMPS=1 turns the skip into a failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.target import Target
from tests import kernel_truth as kt
from tests.linux_session import run

KERNELS = kt.KERNELS
CASES = [(release, scenario) for release in KERNELS for scenario in ("sysrq", "null")]
CASES += [("5.10.0-32-amd64", "bug"), ("5.10.0-32-amd64", "divide"),
          # the panic on an IRQ stack found through 6.2-6.14's pcpu_hot; the walk through a
          # stack overflow's #DF frame; a panic in NMI context
          ("6.12.117+deb13-amd64", "softlockup"), ("6.1.0-57-amd64", "stackoverflow"),
          ("7.2.13+deb14-amd64", "nmi"),
          # the guest's own kdump: its makedumpfile's file, made in the capture kernel
          ("6.1.0-57-amd64", "kdump")]
IDS = [f"{release}/{scenario}" for release, scenario in CASES]
_DIGITS = b"".join(bytes((c, 0)) for c in b"0123456789")

_OPEN: dict[Path, Target] = {}


@pytest.fixture(params=CASES, ids=IDS)
def lab(request: pytest.FixtureRequest) -> tuple[Path, Target]:
    """(the dump's folder, its makedumpfile dump opened once per run)."""
    folder = kt.need_lab_dump(*request.param, name=KERNELS[request.param[0]])
    path = folder / KERNELS[request.param[0]]
    if path not in _OPEN:
        _OPEN[path] = open_target(str(path), config=Config())
    return folder, _OPEN[path]


def _agrees(agreement: kt.Agreement) -> None:
    assert agreement.matched, "nothing to compare"
    assert not agreement.differences, "\n".join(agreement.differences)


def test_kallsyms_addresses_are_the_guests(lab: tuple[Path, Target]) -> None:
    folder, target = lab
    want = {}
    for line in (folder / "truth" / "kallsyms").read_text().splitlines():
        addr, _, name = line.split()
        want[name] = int(addr, 16)
    got = {name: sym.addr for name in want if (sym := target.symbols.lookup(name)) is not None}
    assert got == want
    assert not target.warnings


def test_status_names_the_guests_kernel(lab: tuple[Path, Target]) -> None:
    folder, target = lab
    fields = dict(line.strip().split(": ", 1) for line in run(target, "::status")[0].splitlines()
                  if ": " in line)
    uname = (folder / "truth" / "uname").read_text().split()
    assert fields["RELEASE"] == uname[2]
    assert fields["VERSION"].startswith(" ".join(uname[3:6]))


# what each command is compared with: /proc's files in truth/, or the console
COMPARISONS: dict[str, Callable[[Target, Path], kt.Agreement]] = {
    "ps-is-proc-stat": lambda target, folder: kt.compare_ps(target, folder / "truth"),
    "every-stack-is-proc-stack": lambda target, folder: kt.compare_stacks(target, folder / "truth"),
    "msgbuf-holds-the-console": kt.compare_msgbuf,
    "kmastat-is-slabinfo": lambda target, folder: kt.compare_kmastat(target, folder / "truth"),
    "modules-are-proc-modules": lambda target, folder: kt.compare_modules(target, folder / "truth"),
    "panic-stack-is-the-consoles": kt.compare_panic_stack,
}


@pytest.mark.parametrize("what", list(COMPARISONS))
def test_agrees_with_the_guest(lab: tuple[Path, Target], what: str) -> None:
    folder, target = lab
    _agrees(COMPARISONS[what](target, folder))


def test_the_capture_kernels_vmcore_agrees_with_the_guest() -> None:
    """/proc/vmcore as kexec-tools lays it out: a PT_LOAD for the kernel image inside the one
    for the RAM that holds it. Every address of that RAM is in the dump (the image's segment
    does not hide the rest), so tasks and stacks are the guest's, as from the makedumpfile
    file made of the same /proc/vmcore."""
    from pmdb.dumps.base import FileSource
    from pmdb.dumps.elf import PT_LOAD, read_elf

    folder = kt.need_lab_dump("6.1.0-57-amd64", "kdump", "vmcore.elf")
    phdrs = read_elf(FileSource(str(folder / "vmcore.elf"))).phdrs
    loads = [(p.paddr, p.paddr + p.filesz) for p in phdrs if p.type == PT_LOAD]
    assert any(a < c and d <= b and (a, b) != (c, d) for a, b in loads for c, d in loads), loads
    target = open_target(str(folder / "vmcore.elf"), config=Config())
    assert not target.warnings
    for compare in (kt.compare_ps, kt.compare_stacks):
        _agrees(compare(target, folder / "truth"))


def _without_kallsyms(src: Path, dst: Path) -> Path:
    """A copy of an ELF vmcore with every "0".."9" token run zeroed: kallsyms' token
    table can no longer be found (nor anything that looks like one)."""
    over = len(_DIGITS) - 1
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        tail = b""
        while block := fin.read(16 << 20):
            data = bytearray(tail + block)
            pos = data.find(_DIGITS)
            while pos >= 0:
                data[pos:pos + len(_DIGITS)] = bytes(len(_DIGITS))
                pos = data.find(_DIGITS, pos + 1)
            keep = min(over, len(data))
            fout.write(data[:len(data) - keep])
            tail = bytes(data[len(data) - keep:])
        fout.write(tail)
    return dst


def test_without_kallsyms_status_and_msgbuf_still_answer(tmp_path: Path) -> None:
    """A kernel whose kallsyms cannot be found (here: 5.10's tables with their digit tokens
    zeroed) opens on VMCOREINFO's own symbols, says so once, and still answers ::status's
    release and panic and the whole ::msgbuf; commands that need more fail in one line."""
    folder = kt.need_lab_dump("5.10.0-32-amd64", "sysrq", "vmcore.elf")
    broken = _without_kallsyms(folder / "vmcore.elf", tmp_path / "vmcore.elf")
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pmdb", "-q", str(broken), "-e", "::status",
                               "-e", "::msgbuf", "-e", "::ps"], capture_output=True, text=True, timeout=120)
    finally:
        broken.unlink()         # 200 MB: not for pytest's kept temporary directories
    assert time.perf_counter() - start < 30
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("pmdb: warning: ")]
    assert re.fullmatch(r"pmdb: warning: only VMCOREINFO's \d+ symbols: no kallsyms tables in the \d+ MB "
                        r"of kernel image at 0x[0-9a-f]+ \(VMCOREINFO names them only since Linux 6\.0\)",
                        warnings[0])
    release = (folder / "truth" / "uname").read_text().split()[2]
    assert f"     RELEASE: {release}\n" in proc.stdout
    assert '       PANIC: "sysrq: Trigger a crash"\n' in proc.stdout
    have = set(proc.stdout.splitlines())
    assert all(line in have for line in kt.console_messages(folder))
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("pmdb: warning: ")]
    assert errors == ["pmdb: no init_task in kallsyms: the task list is unknown"]
    assert proc.returncode == 1         # ::ps failed, the rest answered
