"""The guest's own kdump: kexec -p loads a capture kernel, the panic boots it, and it saves
/proc/vmcore twice, as the kernel presents it (ELF; ELF32 on i386 with kexec's
``--elf32-core-headers``) and through the guest arch's own makedumpfile (-c -d 31, so a kdump
file with that arch's header layout: 32-bit ``long`` on i386).

This is how production dumps are made, and the only way to real ELF32 vmcores and 32-bit
kdump headers: QEMU's dump-guest-memory writes ELF64 for an i386 guest (the BIOS ROM ends at
4 GiB) and its kdump in the 64-bit layout.

The capture kernel writes to two raw virtio disks (QEMU files): the ELF to the first, the
flattened makedumpfile stream (``-F``, to stdout) to the second. The host cuts the ELF at its
last segment's end and turns the stream into a kdump file with ``makedumpfile -R`` (only
rearranging: it reads no ELF, so the host's amd64 build serves every arch).
"""

from __future__ import annotations

import re
import struct
import subprocess
import tarfile
from pathlib import Path

from tests.vmlab import qemu
from tests.vmlab.arches import Arch
from tests.vmlab.chroot import _unpack_into
from tests.vmlab.common import LabError, building, need_tool, say
from tests.vmlab.debindex import fetch_deb, load_index
from tests.vmlab.foreignmdf import runtime_closure
from tests.vmlab.kernels import Kernel, kernel_dir, packages, resolve

SUITE = "bookworm"
MEM = "384M"                 # a kdump set's guest RAM: crashkernel=128M of it is the capture's
CAPTURE_TIMEOUT = 600        # seconds from the panic to the capture's end, at most (TCG)
DISK_BYTES = 512 << 20       # each capture disk (sparse): more than the ELF of a 384M guest
CAPTURE_CMDLINE = "maxcpus=1 nr_cpus=1 reset_devices irqpoll panic=0 loglevel=4 pmdblab.capture=1"
# the virtio stack the capture kernel loads to reach its disks, in dependency order
VIRTIO = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
          "virtio_blk")


def tools(cache: Path, arch: Arch) -> Path:
    """A sysroot with the arch's kexec-tools and makedumpfile and the libraries they load."""
    root = cache / "tools" / f"kdump-sysroot-{arch.name}"
    if (root / "sbin" / "kexec").exists():
        return root
    index = load_index(cache, "debian", SUITE, prefix="", arch=arch.name)
    with building(root) as tmp:
        for top in ("kexec-tools", "makedumpfile"):
            for pkg in runtime_closure(index, top):
                say(f"unpacking {pkg.name} {pkg.version} ({arch.name}) for the guest's kdump")
                _unpack_into(fetch_deb(cache, "debian", pkg), tmp)
        if not (tmp / "sbin" / "kexec").exists():
            raise LabError(f"no sbin/kexec in {arch.name}'s kexec-tools")
    return root


def initramfs_files(root: Path) -> dict[str, tuple[bytes, int]]:
    """The sysroot's two programs and every shared library (symlinks as the files they name),
    for the initramfs: no docs, locales or gconv modules."""
    out: dict[str, tuple[bytes, int]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        wanted = rel in ("sbin/kexec", "usr/sbin/makedumpfile", "usr/bin/makedumpfile") or (
            ".so" in path.name and "gconv" not in rel and not rel.startswith("usr/share"))
        if wanted and path.is_file():
            out[rel] = (path.read_bytes(), 0o755)
    return out


def virtio_modules(cache: Path, kernel: Kernel) -> list[Path]:
    """The kernel's virtio disk modules (not in the lab's trimmed image), in load order; those
    built in are skipped. Taken from the image .deb once, kept beside the image."""
    dest = kernel_dir(cache, kernel) / "virtio"
    if not dest.exists():
        with building(dest) as tmp:
            for pkg in packages(resolve(cache, kernel), "image"):
                deb = fetch_deb(cache, kernel.archive, pkg)
                _extract_modules(deb, tmp, {f"{name}.ko" for name in VIRTIO})
    found = {p.name.split(".ko")[0]: p for p in dest.rglob("*.ko*")}
    return [found[name] for name in VIRTIO if name in found]


def _extract_modules(deb: Path, dest: Path, names: set[str]) -> None:
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            base = Path(member.name).name
            if member.isfile() and base.split(".ko")[0] + ".ko" in names:
                src = tar.extractfile(member)
                assert src is not None
                (dest / base).write_bytes(src.read())
    if proc.wait() != 0:
        raise LabError(f"dpkg-deb could not read {deb}")


def kexec_arguments(arch: Arch) -> str:
    """What kexec -p is given beyond the kernel and initrd: i386 asks for ELF32 headers."""
    return "--elf32-core-headers" if arch.name == "i386" else ""


def disks(work: Path) -> list[str]:
    """QEMU arguments for the two empty capture disks (sparse files in the work dir)."""
    argv: list[str] = []
    for i, name in enumerate(("capture-elf.disk", "capture-flat.disk")):
        path = work / name
        with open(path, "wb") as f:
            f.truncate(DISK_BYTES)
        argv += ["-drive", f"file={path},format=raw,if=none,id=capture{i}",
                 "-device", f"virtio-blk-pci,drive=capture{i}"]
    return argv


def wait_for_capture(guest: qemu.Guest) -> None:
    """Until the capture kernel says it is done (or QEMU ends); a kexec that failed in the
    first kernel, or a capture step that failed, is one LabError naming the console log."""
    def done() -> bool:
        text = guest.console_text()
        for bad in ("pmdblab-init: kexec -p failed", "vmcore copied: 1", "makedumpfile: 1"):
            if bad in text:
                raise LabError(f"the guest's kdump failed ({bad.split(': ', 1)[1]}); see {guest.console}")
        return "pmdblab-init: capture done" in text or not guest.alive()
    guest.wait("the capture kernel's dumps", done, CAPTURE_TIMEOUT)


def elf_length(head: bytes) -> int:
    """Where an ELF core written to a raw disk ends: its last segment's or header's end."""
    if head[:4] != b"\x7fELF":
        raise LabError("the capture kernel wrote no ELF to its first disk (see console.log)")
    if head[4] == 1:
        phoff, phentsize, phnum = struct.unpack_from("<I", head, 28)[0], *struct.unpack_from("<HH", head, 42)
        entries = [struct.unpack_from("<IIIIII", head, phoff + i * phentsize) for i in range(phnum)]
        return max(off + filesz for _, off, _, _, filesz, _ in entries)
    phoff, = struct.unpack_from("<Q", head, 32)
    phentsize, phnum = struct.unpack_from("<HH", head, 54)
    ends = [struct.unpack_from("<IIQQQQ", head, phoff + i * phentsize) for i in range(phnum)]
    return max(off + filesz for _, _, off, _, _, filesz in ends)


STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]")


def split_console(console: Path) -> None:
    """Leave the crashed kernel's lines in console.log (the oracle of ::msgbuf and the panic
    trace) and move the capture kernel's to capture-console.log. They begin at the first of:
    a kernel timestamp lower than the one before it (the capture kernel's clock starts again),
    or the capture init's first marker (its scenario is empty)."""
    lines = console.read_text(errors="replace").splitlines(keepends=True)
    at = _capture_start(lines)
    if at is not None:
        console.write_text("".join(lines[:at]))
        console.with_name("capture-console.log").write_text("".join(lines[at:]))


def _capture_start(lines: list[str]) -> int | None:
    last = 0.0
    for at, line in enumerate(lines):
        if line.rstrip("\n") == "pmdblab-init: init started, scenario=":
            return at
        m = STAMP.match(line)
        if m is not None:
            if float(m.group(1)) < last:
                return at
            last = float(m.group(1))
    return None


def collect(work: Path, out: Path) -> list[str]:
    """vmcore.elf and vmcore.mdf out of the capture disks (the disks are removed), and the
    console split between the two kernels."""
    split_console(work / "console.log")
    elf_disk, flat_disk = work / "capture-elf.disk", work / "capture-flat.disk"
    with open(elf_disk, "rb") as src:
        head = src.read(1 << 20)
        length = elf_length(head)
        src.seek(0)
        with open(out / "vmcore.elf", "wb") as dst:
            left = length
            while left:
                block = src.read(min(left, 8 << 20))
                if not block:
                    raise LabError("the ELF on the capture disk is cut short")
                dst.write(block)
                left -= len(block)
    need_tool("makedumpfile", "makedumpfile")
    with open(flat_disk, "rb") as src, open(out / "makedumpfile.log", "ab") as log:
        proc = subprocess.run(["makedumpfile", "-R", str(out / "vmcore.mdf")], stdin=src,
                              stdout=log, stderr=log)
    if proc.returncode != 0:
        raise LabError(f"makedumpfile -R failed on the guest's stream; see {out / 'makedumpfile.log'}")
    for disk in (elf_disk, flat_disk):
        disk.unlink()
    return ["elf", "mdf"]


def initramfs_extras(cache: Path, kernel: Kernel, arch: Arch, kimage: Path, console: str,
                     busybox: bytes, init: bytes) -> dict[str, tuple[bytes, int]]:
    """What a kdump set's initramfs adds: kexec and makedumpfile with their libraries, and under
    /boot the capture kernel, its own small initramfs (the same init, busybox, makedumpfile and
    the virtio disk modules), its command line and kexec's extra arguments."""
    from tests.vmlab.initramfs import cpio_bytes, plain_module

    programs = initramfs_files(tools(cache, arch))
    capture = {"init": (init, 0o755), "bin/busybox": (busybox, 0o755), **programs}
    for n, mod in enumerate(virtio_modules(cache, kernel)):
        capture[f"lib/kdump-modules/{n}-{mod.name.split('.ko')[0]}.ko"] = (plain_module(mod), 0o644)
    cmdline = f"console={console},115200 {CAPTURE_CMDLINE}"
    return {**programs,
            "boot/vmlinuz-capture": (kimage.read_bytes(), 0o644),
            "boot/initrd-capture": (cpio_bytes(capture), 0o644),
            "boot/capture-cmdline": (cmdline.encode() + b"\n", 0o644),
            "boot/kexec-args": (kexec_arguments(arch).encode() + b"\n", 0o644)}
