"""The guest's initramfs: busybox, the lab's init and helper, fw_cfg and the buggy module.

Written as an uncompressed newc cpio by Python (no cpio/gzip needed; the kernel unpacks it
faster under TCG than a compressed one). Compressed modules (.ko.xz, .ko.zst) are unpacked
here because busybox's insmod takes only plain ones.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import subprocess
import tarfile
from pathlib import Path

from tests.vmlab.arches import ARCHES, Arch
from tests.vmlab.chroot import compile_in_chroot
from tests.vmlab.common import LabError, need_tool, run, say
from tests.vmlab.debindex import fetch_deb, load_index, pick
from tests.vmlab.kernels import Kernel

GUEST = Path(__file__).with_name("guest")
BUSYBOX = Path("/bin/busybox")
BUSYBOX_SUITE = "bookworm"  # whose busybox-static the foreign arches get (the host's release)


def _entry(out: io.BufferedIOBase, ino: int, name: str, mode: int, data: bytes = b"") -> None:
    """One newc member: header, NUL-ended name and data, each padded to 4 bytes."""
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08x" % f for f in fields)
    blob = head + name.encode() + b"\0"
    out.write(blob + b"\0" * (-len(blob) % 4))
    out.write(data + b"\0" * (-len(data) % 4))


def write_cpio(dest: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """A newc archive of files {path: (data, mode bits)}, with every parent dir before them."""
    with open(dest, "wb") as out:
        _write_members(out, files)


def cpio_bytes(files: dict[str, tuple[bytes, int]]) -> bytes:
    """The same archive in memory (an initramfs inside an initramfs: the kdump capture's)."""
    buf = io.BytesIO()
    _write_members(buf, files)
    return buf.getvalue()


def _write_members(out: io.BufferedIOBase | io.BytesIO, files: dict[str, tuple[bytes, int]]) -> None:
    dirs = sorted({str(Path(p).parents[i]) for p in files for i in range(len(Path(p).parents) - 1)})
    ino = 1
    for d in ["dev", "proc", "sys", "tmp", *dirs]:
        _entry(out, ino, d, 0o040755)
        ino += 1
    for path, (data, mode) in sorted(files.items()):
        _entry(out, ino, path, 0o100000 | mode, data)
        ino += 1
    _entry(out, 0, "TRAILER!!!", 0)


def plain_module(path: Path) -> bytes:
    """A module's bytes, decompressed when Debian ships it as .ko.xz or .ko.zst."""
    raw = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(raw)
    if path.suffix == ".zst":
        import zstandard  # a pmdb dependency; only sid-era kernels may need it

        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return raw


def labapp(cache: Path, arch: Arch = ARCHES["amd64"], kernel: Kernel | None = None) -> Path:
    """The static helper binary, compiled once per source version with the host's gcc (-m32
    for i386), or for arm64 with the cross gcc in the kernel's suite chroot.

    amd64's keeps its old name (labapp-<hash>); the others carry the arch (labapp-arm64-<hash>).
    """
    src = GUEST / "labapp.c"
    tag = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = cache / "tools" / ("labapp-" + ("" if arch.name == "amd64" else f"{arch.name}-") + tag)
    if out.exists():
        return out
    say(f"compiling labapp (static, {arch.name})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if arch.chroot_cc:
        assert kernel is not None, "a cross-compiled labapp needs the kernel's suite chroot"
        compile_in_chroot(cache, kernel, src, tmp)
    else:
        need_tool(arch.cc[0], arch.cc_package)
        run([*arch.cc, "-static", "-O2", "-Wall", "-pthread", "-o", tmp, src],
            f"compiling labapp for {arch.name} (apt-get install {arch.cc_package})")
    tmp.rename(out)
    return out


def busybox(cache: Path, arch: Arch, suite: str = BUSYBOX_SUITE) -> Path:
    """A static busybox for arch: the host's for amd64, else bin/busybox out of bookworm's
    busybox-static .deb of that arch (downloaded once, kept under tools/).

    Bookworm's for every kernel, as amd64 uses the host's: bullseye's busybox 1.30 has no
    base64 applet, so the init's truth came out empty with it.
    """
    if arch.name == "amd64":
        if not BUSYBOX.exists() or BUSYBOX.read_bytes()[:4] != b"\x7fELF":
            raise LabError(f"no static {BUSYBOX}: apt-get install busybox-static")
        return BUSYBOX
    pkg = pick(load_index(cache, "debian", suite, prefix="busybox-static", arch=arch.name),
               "busybox-static")
    out = cache / "tools" / f"busybox-{arch.name}-{pkg.version}"
    if out.exists():
        return out
    deb = fetch_deb(cache, "debian", pkg)
    tmp = out.with_name(out.name + ".tmp")
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            if member.name.lstrip("./") in ("bin/busybox", "usr/bin/busybox") and member.isfile():
                src = tar.extractfile(member)
                assert src is not None
                tmp.write_bytes(src.read())
    proc.wait()
    if not tmp.exists():
        raise LabError(f"no bin/busybox in {deb}")
    tmp.rename(out)
    return out


def build(cache: Path, dest: Path, modules: list[Path], kernel: Kernel | None = None,
          kdump_kernel: Path | None = None, disk_modules: list[Path] | None = None) -> Path:
    """Write the initramfs for one boot to dest (for kernel's arch; amd64 when None); with
    ``kdump_kernel``, what the guest's own kdump needs too (tests/vmlab/kdump.py); with
    ``disk_modules``, the virtio disk stack under lib/disk-modules/, numbered in load order."""
    arch = ARCHES[kernel.arch if kernel else "amd64"]
    files = {
        "init": ((GUEST / "init").read_bytes(), 0o755),
        "bin/busybox": (busybox(cache, arch).read_bytes(), 0o755),
        "bin/labapp": (labapp(cache, arch, kernel).read_bytes(), 0o755),
    }
    for mod in modules:
        name = mod.name.split(".ko")[0] + ".ko"
        files[f"lib/modules/{name}"] = (plain_module(mod), 0o644)
    for i, mod in enumerate(disk_modules or []):
        name = mod.name.split(".ko")[0] + ".ko"
        files[f"lib/disk-modules/{i:02d}-{name}"] = (plain_module(mod), 0o644)
    if kdump_kernel is not None:
        assert kernel is not None, "a kdump initramfs needs its kernel"
        from tests.vmlab.kdump import initramfs_extras

        files.update(initramfs_extras(cache, kernel, arch, kdump_kernel, arch.console,
                                      files["bin/busybox"][0], files["init"][0]))
    write_cpio(dest, files)
    return dest
