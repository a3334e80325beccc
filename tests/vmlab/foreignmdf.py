"""makedumpfile for the i386 and arm64 dumps: that arch's own Debian build, run under qemu-user.

The host's (amd64) makedumpfile reads only x86-64 dumps. Bookworm's makedumpfile .deb of the
dump's arch and the few libraries it needs (followed from its Depends in the arch's index) are
unpacked into a sysroot under tools/, and run with `qemu-<cpu> -L <sysroot>` (package
qemu-user): no chroot, no binfmt. Made once per arch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.vmlab.arches import Arch
from tests.vmlab.chroot import _unpack_into
from tests.vmlab.common import LabError, building, need_tool, say
from tests.vmlab.debindex import Package, fetch_deb, load_index

SUITE = "bookworm"
# Depends not needed to run the binary (maintainer scripts, kexec integration)
SKIP = {"perl", "debconf", "kexec-tools", "init-system-helpers", "lsb-base", "sysvinit-utils"}


def runtime_closure(index: dict[str, list[Package]], root: str) -> list[Package]:
    """root and what it Depends on (first alternatives), less SKIP and names not in the index."""
    out: list[Package] = []
    todo, seen = [root], {root}
    while todo:
        pkg = index[todo.pop(0)][-1]
        out.append(pkg)
        for dep in pkg.depends:
            if dep not in seen and dep not in SKIP and dep in index:
                seen.add(dep)
                todo.append(dep)
    return out


def makedumpfile_argv(cache: Path, arch: Arch) -> list[str]:
    """The command that runs the arch's makedumpfile here (arguments follow)."""
    assert arch.qemu_user, f"{arch.name} dumps are read by the host's makedumpfile"
    need_tool(arch.qemu_user, "qemu-user")
    root = cache / "tools" / f"sysroot-{arch.name}"
    binary = root / "usr" / "bin" / "makedumpfile"
    if not binary.exists():
        index = load_index(cache, "debian", SUITE, prefix="", arch=arch.name)
        if "makedumpfile" not in index:
            raise LabError(f"no makedumpfile in {SUITE}'s {arch.name} index")
        with building(root) as tmp:
            for pkg in runtime_closure(index, "makedumpfile"):
                say(f"unpacking {pkg.name} {pkg.version} ({arch.name}) for makedumpfile")
                _unpack_into(fetch_deb(cache, "debian", pkg), tmp)
            shutil.rmtree(tmp / "usr" / "share", ignore_errors=True)
    return [arch.qemu_user, "-L", str(root), str(binary)]
