"""A kernel's debug vmlinux (Debian's linux-image-RELEASE-dbg), fetched into the lab cache.

pmdb reads a kernel's types from its DWARF when the dump has no BTF (Debian's 686-pae
kernels) and for globals BTF does not describe. The -dbg package is large (~0.7-0.9 GB,
~3 GB unpacked: every module's debug file too), so only the vmlinux is unpacked, while the
package streams through dpkg-deb, and the .deb is deleted afterwards.
"""

from __future__ import annotations

import subprocess
import tarfile
import time
import tomllib
from pathlib import Path

from tests.vmlab.common import LabError, building, say
from tests.vmlab.debindex import fetch_deb, load_index, pick
from tests.vmlab.kernels import KERNELS_TOML, Kernel, kernel_dir, select


def select_dbg(names: str) -> list[Kernel]:
    """Kernels named as ``select`` names them, or by a name of kernels.toml's ``dbg-only``
    table (a kernel the lab does not boot, whose debug vmlinux the tests read)."""
    with open(KERNELS_TOML, "rb") as f:
        extra = {name: Kernel(name=name, **fields)
                 for name, fields in tomllib.load(f).get("dbg-only", {}).items()}
    out: list[Kernel] = []
    for name in names.split(","):
        hit = extra.get(name) or next((k for k in extra.values() if k.release == name), None)
        out += [hit] if hit is not None else select(name)
    return out


def dbg_dir(cache: Path, kernel: Kernel) -> Path:
    """Where the unpacked vmlinux lives: kernels/RELEASE/dbg/vmlinux-RELEASE."""
    return kernel_dir(cache, kernel) / "dbg"


def dbg_vmlinux(cache: Path, kernel: Kernel) -> Path:
    return dbg_dir(cache, kernel) / f"vmlinux-{kernel.release}"


def _is_vmlinux(member: str, release: str) -> bool:
    """The package's vmlinux: /usr/lib/debug/boot/vmlinux-REL (bullseye, bookworm) or
    /usr/lib/debug/lib/modules/REL/vmlinux (some later layouts)."""
    path = member.lstrip("./")
    return path in (f"usr/lib/debug/boot/vmlinux-{release}",
                    f"usr/lib/debug/lib/modules/{release}/vmlinux")


def fetch_dbg(cache: Path, kernel: Kernel) -> Path:
    """The kernel's debug vmlinux in the lab cache, downloaded and unpacked once."""
    final = dbg_vmlinux(cache, kernel)
    if final.exists():
        return final
    index = load_index(cache, kernel.archive, kernel.dist, arch=kernel.arch)
    pkg = pick(index, f"linux-image-{kernel.release}-dbg", kernel.version)
    started = time.monotonic()
    with building(dbg_dir(cache, kernel)) as tmp:
        deb = fetch_deb(cache, kernel.archive, pkg)
        fetched = time.monotonic()
        say(f"unpacking the vmlinux of {deb.name} (downloaded in {fetched - started:.0f} s)")
        _extract_vmlinux(deb, tmp / final.name, kernel.release)
        deb.unlink()
        say(f"unpacked in {time.monotonic() - fetched:.0f} s")
    return final


def _extract_vmlinux(deb: Path, dest: Path, release: str) -> None:
    """Stream the .deb's data tar and write out its vmlinux alone."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    found = False
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile() and _is_vmlinux(member.name, release):
                    src = tar.extractfile(member)
                    assert src is not None
                    with open(dest, "wb") as out:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
                    found = True
                    break
    finally:
        proc.stdout.close()
        proc.kill()             # the rest of the package (module debug files) is not needed
        proc.wait()
    if not found:
        raise LabError(f"no vmlinux-{release} in {deb.name}")
