"""The guest's initramfs: busybox, the lab's init and helper, fw_cfg and the buggy module.

Written as an uncompressed newc cpio by Python (no cpio/gzip needed; the kernel unpacks it
faster under TCG than a compressed one). Compressed modules (.ko.xz, .ko.zst) are unpacked
here because busybox's insmod takes only plain ones.
"""

from __future__ import annotations

import hashlib
import io
import lzma
from pathlib import Path

from tests.vmlab.common import LabError, need_tool, run, say

GUEST = Path(__file__).with_name("guest")
BUSYBOX = Path("/bin/busybox")


def _entry(out: io.BufferedIOBase, ino: int, name: str, mode: int, data: bytes = b"") -> None:
    """One newc member: header, NUL-ended name and data, each padded to 4 bytes."""
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08x" % f for f in fields)
    blob = head + name.encode() + b"\0"
    out.write(blob + b"\0" * (-len(blob) % 4))
    out.write(data + b"\0" * (-len(data) % 4))


def write_cpio(dest: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """A newc archive of files {path: (data, mode bits)}, with every parent dir before them."""
    dirs = sorted({str(Path(p).parents[i]) for p in files for i in range(len(Path(p).parents) - 1)})
    with open(dest, "wb") as out:
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


def labapp(cache: Path) -> Path:
    """The static helper binary, compiled once per source version with the host's gcc."""
    src = GUEST / "labapp.c"
    tag = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = cache / "tools" / f"labapp-{tag}"
    if out.exists():
        return out
    need_tool("gcc", "gcc libc6-dev")
    say("compiling labapp (static)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    run(["gcc", "-static", "-O2", "-Wall", "-pthread", "-o", tmp, src], "compiling labapp")
    tmp.rename(out)
    return out


def build(cache: Path, dest: Path, modules: list[Path]) -> Path:
    """Write the initramfs for one boot to dest."""
    if not BUSYBOX.exists() or BUSYBOX.read_bytes()[:4] != b"\x7fELF":
        raise LabError(f"no static {BUSYBOX}: apt-get install busybox-static")
    files = {
        "init": ((GUEST / "init").read_bytes(), 0o755),
        "bin/busybox": (BUSYBOX.read_bytes(), 0o755),
        "bin/labapp": (labapp(cache).read_bytes(), 0o755),
    }
    for mod in modules:
        name = mod.name.split(".ko")[0] + ".ko"
        files[f"lib/modules/{name}"] = (plain_module(mod), 0o644)
    write_cpio(dest, files)
    return dest
