"""One QEMU guest: boot it, watch its serial ports, and drive it over QMP.

The guest has two channels written to files: the console (ttyS0; arm64 virt's one PL011,
ttyAMA0), where the host waits on the init's markers and the panic, and the truth channel
(ttyS1; on arm64 a virtio console, hvc0, since virt has no second UART). `-device vmcoreinfo`
lets QEMU's dump-guest-memory copy the guest's VMCOREINFO note (the guest's qemu_fw_cfg driver
tells QEMU where it is; fw_cfg is MMIO on virt, and works the same).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.vmlab.arches import ARCHES, Arch
from tests.vmlab.common import LabError, need_tool

PANIC_END = re.compile(r"---\[ end Kernel panic - not syncing: (.*?) \]---")
PANIC_LINE = re.compile(r"Kernel panic - not syncing: (.*)")


@dataclass
class Guest:
    """A running QEMU and the files it writes."""

    proc: subprocess.Popen[bytes]
    work: Path
    started: float
    qmp_path: Path
    _qmp: QMP | None = field(default=None, repr=False)

    @property
    def console(self) -> Path:
        return self.work / "console.log"

    @property
    def truth_serial(self) -> Path:
        return self.work / "truth.serial"

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def qmp(self) -> QMP:
        if self._qmp is None:
            self._qmp = QMP(self.qmp_path)
        return self._qmp

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, what: str, done: Callable[[], bool], timeout: float) -> float:
        """Poll until done(); seconds since boot. LabError if QEMU dies or time runs out."""
        end = time.monotonic() + timeout
        while not done():
            if not self.alive():
                raise LabError(f"QEMU exited (code {self.proc.returncode}) while waiting for {what}; "
                               f"see {self.work / 'qemu.log'}")
            if time.monotonic() > end:
                raise LabError(f"no {what} after {timeout:.0f} s; see {self.console}")
            time.sleep(0.25)
        return time.monotonic() - self.started

    def stop(self) -> None:
        """Quit QEMU (politely over QMP, else by signal)."""
        if self._qmp is not None:
            try:
                self._qmp.command("quit")
            except (LabError, OSError):
                pass
            self._qmp.close()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class QMP:
    """A minimal QMP client: one command at a time, events skipped."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        for _ in range(100):
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.1)
        else:
            raise LabError(f"cannot connect to QMP at {path}")
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # the greeting
        self.command("qmp_capabilities")

    def command(self, name: str, **args: object) -> object:
        self.file.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise LabError(f"QMP {name}: QEMU closed the connection")
            reply = json.loads(line)
            if "error" in reply:
                raise LabError(f"QMP {name} failed: {reply['error'].get('desc', reply['error'])}")
            if "return" in reply:
                return reply["return"]

    def close(self) -> None:
        self.sock.close()


def truth_channel(arch: Arch, work: Path) -> list[str]:
    """The argv for the truth channel: a second serial port, or a virtio console (arm64)."""
    path = work / "truth.serial"
    if arch.truth_tty.startswith("ttyS"):
        return ["-serial", f"file:{path}"]
    return ["-device", "virtio-serial-device", "-chardev", f"file,id=truth,path={path}",
            "-device", "virtconsole,chardev=truth"]


def qemu_command(kernel: Path, initrd: Path, cmdline: str, work: Path, accel: str,
                 mem: str, smp: int, arch: Arch = ARCHES["amd64"], extra: tuple[str, ...] = ()) -> list[str]:
    """The QEMU argv: the arch's machine and CPU, console and truth files, QMP socket."""
    return [
        arch.qemu, "-accel", accel, "-machine", arch.machine, "-cpu", arch.cpu,
        "-smp", str(smp), "-m", mem, "-nodefaults", "-display", "none", "-no-reboot",
        "-device", "vmcoreinfo",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
        "-serial", f"file:{work / 'console.log'}", *truth_channel(arch, work),
        "-qmp", f"unix:{work / 'qmp.sock'},server=on,wait=off", *extra,
    ]


def boot(kernel: Path, initrd: Path, cmdline: str, work: Path, accel: str,
         mem: str = "192M", smp: int = 2, arch: Arch = ARCHES["amd64"],
         extra: tuple[str, ...] = ()) -> Guest:
    """Start the guest; it runs until stop()."""
    need_tool(arch.qemu, arch.qemu_package)
    for name in ("console.log", "truth.serial", "qmp.sock"):
        (work / name).unlink(missing_ok=True)
    argv = qemu_command(kernel, initrd, cmdline, work, accel, mem, smp, arch, extra)
    (work / "qemu.argv").write_text(" ".join(argv) + "\n")
    log = open(work / "qemu.log", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "LC_ALL": "C"})
    log.close()
    return Guest(proc, work, time.monotonic(), work / "qmp.sock")


def panic_reason(console: str) -> str | None:
    """The panic's reason once the kernel has printed it, else None."""
    m = PANIC_END.search(console) or PANIC_LINE.search(console)
    return m.group(1).strip() if m else None


def panic_finished(console: str) -> bool:
    """Whether panic() printed its closing line (5.10 does not when it panics in NMI or
    double-fault context: that line stays in the NMI printk buffer)."""
    return PANIC_END.search(console) is not None


def dump_formats(guest: Guest) -> set[str]:
    """The dump-guest-memory formats this QEMU supports (elf, kdump-zlib, -lzo, -snappy...)."""
    caps = guest.qmp().command("query-dump-guest-memory-capability")
    assert isinstance(caps, dict)
    return set(caps.get("formats", []))
