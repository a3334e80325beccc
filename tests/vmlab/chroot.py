"""Build the buggy module against a kernel's headers, inside a chroot of the kernel's own suite.

Why a chroot: trixie's and sid's linux-kbuild host tools (fixdep, modpost, objtool) need a newer
glibc than this Debian 12 host has, and each kernel's headers expect the gcc it was built with
(gcc-10 for 5.10, 12 for 6.1, 14 for trixie, 16 for sid). A minimal debootstrap of the suite,
with that gcc and the kbuild packages' libraries, is built once per suite and cached; the
headers .debs are unpacked into it (their names carry the ABI, so kernels of one suite coexist).

Foreign kernels are built in the same amd64 chroot: i386 with ARCH=x86 (the kernel Makefile adds
-m32 to the amd64 gcc), arm64 with the suite's cross gcc (gcc-N-aarch64-linux-gnu, added to the
chroot with apt-get; on the host it would conflict with gcc-multilib, which the tests need). The
same cross gcc compiles the arm64 labapp.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from tests.vmlab.arches import ARCHES
from tests.vmlab.common import MIRROR, LabError, building, need_tool, run, say
from tests.vmlab.kernels import Kernel, fetch_headers, kernel_dir, load_kernels, resolve

GUEST = Path(__file__).with_name("guest")
MODULE = "pmdblab"
BASE_PACKAGES = ["make", "libc6-dev"]  # the compiler comes from the headers' Depends


def chroot_dir(cache: Path, suite: str) -> Path:
    return cache / "chroots" / suite


def _compiler_packages(tools: list[str]) -> list[str]:
    """The headers' compiler and the kbuild tools' libraries, as debootstrap --include names."""
    return sorted(set(BASE_PACKAGES) | set(tools))


def ensure_chroot(cache: Path, kernel: Kernel) -> Path:
    """The suite's chroot with this kernel's compiler in it, built once (a minute or two).

    It gets every pinned kernel of the suite's tools at once (6.1 and 6.12-bpo share bookworm),
    so a second kernel does not rebuild it.
    """
    root = chroot_dir(cache, kernel.suite)
    stamp = root / ".pmdblab-packages"
    have = set(stamp.read_text().split()) if stamp.exists() else set()
    if root.exists() and set(_compiler_packages(resolve(cache, kernel)["tools"])) <= have:
        return root
    tools = [t for k in load_kernels().values() if k.suite == kernel.suite
             for t in resolve(cache, k)["tools"]]
    wanted = sorted(set(_compiler_packages(tools)) | have)
    need_tool("debootstrap", "debootstrap")
    say(f"building the {kernel.suite} chroot with {', '.join(wanted)} (once; a few minutes)")
    log = cache / "chroots" / f"{kernel.suite}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    with building(root) as tmp:
        try:
            run(["debootstrap", "--variant=minbase", f"--include={','.join(wanted)}",
                 kernel.suite, tmp, f"{MIRROR}/debian"], f"debootstrap of {kernel.suite}", log)
        finally:
            _umount_under(tmp)
        shutil.rmtree(tmp / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        (tmp / ".pmdblab-packages").write_text("\n".join(wanted) + "\n")
    return root


def cross_packages(arch: str, tools: list[str]) -> list[str]:
    """What the amd64 chroot needs to build for arch: the cross twin of the headers' gcc-N
    (and a libc for labapp). Nothing for amd64 and i386 (the amd64 gcc does -m32)."""
    triplet = ARCHES[arch].chroot_cc
    if not triplet:
        return []
    gccs = sorted({m.group(1) for t in tools if (m := re.match(r"(gcc-\d+)", t))})
    return [f"{g}-{triplet}" for g in gccs] + [f"libc6-dev-{arch}-cross"]


def cross_gcc(arch: str, tools: list[str]) -> str:
    """The cross compiler's command in the chroot (aarch64-linux-gnu-gcc-12)."""
    gcc = cross_packages(arch, tools)[0].removesuffix("-" + ARCHES[arch].chroot_cc)
    return f"{ARCHES[arch].chroot_cc}-{gcc}"


def ensure_cross(cache: Path, kernel: Kernel) -> Path:
    """The suite's chroot with the kernel's cross compiler added (apt-get, once)."""
    root = ensure_chroot(cache, kernel)
    stamp = root / ".pmdblab-packages"
    have = set(stamp.read_text().split())
    missing = [p for p in cross_packages(kernel.arch, resolve(cache, kernel)["tools"]) if p not in have]
    if missing:
        say(f"adding {', '.join(missing)} to the {kernel.suite} chroot (once)")
        log = cache / "chroots" / f"{kernel.suite}.log"
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
        # sid's mirror may serve a Release past its Valid-Until (debootstrap does not check it)
        run(["chroot", root, "apt-get", "-o", "Acquire::Check-Valid-Until=false", "update", "-qq"], f"apt-get update in the {kernel.suite} chroot", log, env=env)
        run(["chroot", root, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            f"adding {' '.join(missing)} to the {kernel.suite} chroot", log, env=env)
        shutil.rmtree(root / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        (root / "var" / "lib" / "apt" / "lists").mkdir()
        stamp.write_text("\n".join(sorted(have | set(missing))) + "\n")
    return root


def compile_in_chroot(cache: Path, kernel: Kernel, src: Path, out: Path) -> None:
    """Compile src statically with the kernel's cross gcc inside its suite chroot (labapp)."""
    root = ensure_cross(cache, kernel)
    gcc = cross_gcc(kernel.arch, resolve(cache, kernel)["tools"])
    work = root / "build" / f"labapp-{kernel.arch}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(src, work)
    inner = f"/build/{work.name}"
    run(["chroot", root, gcc, "-static", "-O2", "-Wall", "-pthread", "-o", f"{inner}/out",
         f"{inner}/{src.name}"], f"compiling {src.name} for {kernel.arch} in the {kernel.suite} chroot",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    shutil.copy(work / "out", out)
    shutil.rmtree(work, ignore_errors=True)


def _unpack_into(deb: Path, root: Path) -> None:
    """dpkg-deb -x, but keeping the chroot's merged-/usr symlinks (/lib -> usr/lib) intact.

    Plain extraction replaces the /lib symlink with a directory when a package ships ./lib/...
    (the 5.10 and 6.1 headers do), and the chroot then has no libc.
    """
    data = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "--keep-directory-symlink", "-C", str(root)],
                           stdin=data.stdout, capture_output=True, text=True)
    if data.wait() != 0 or untar.returncode != 0:
        raise LabError(f"unpacking {deb.name} into {root} failed: {untar.stderr.strip()[:200]}")


def _umount_under(path: Path) -> None:
    """Unmount what debootstrap left mounted under path (it mounts /proc), deepest first."""
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(str(path) + "/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def _install_headers(cache: Path, kernel: Kernel, root: Path) -> Path:
    """Unpack the headers .debs into the chroot; returns the headers dir (inside the chroot)."""
    headers = root / "usr" / "src" / f"linux-headers-{kernel.release}"
    stamp = headers / ".pmdblab-version"
    if stamp.exists() and stamp.read_text() == kernel.version:
        return headers
    for deb in fetch_headers(cache, kernel):
        _unpack_into(deb, root)
    if not (headers / "Makefile").exists():
        raise LabError(f"no {headers}/Makefile after unpacking {kernel.name}'s headers")
    stamp.write_text(kernel.version)
    return headers


def module_source_hash() -> str:
    """Changes when the module's source does, so a stale build is not reused."""
    return hashlib.sha256((GUEST / f"{MODULE}.c").read_bytes()).hexdigest()[:16]


def build_module(cache: Path, kernel: Kernel) -> Path:
    """pmdblab.ko for this kernel (with DWARF), built in the suite chroot, cached."""
    final = kernel_dir(cache, kernel) / "module"
    ko = final / f"{MODULE}.ko"
    stamp = final / "source.sha256"
    if ko.exists() and stamp.exists() and stamp.read_text() == module_source_hash():
        return ko
    root = ensure_cross(cache, kernel)
    headers = _install_headers(cache, kernel, root)
    say(f"building {MODULE}.ko for {kernel.release} in the {kernel.suite} chroot")
    work = root / "build" / kernel.release
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(GUEST / f"{MODULE}.c", work)
    (work / "Kbuild").write_text(f"obj-m := {MODULE}.o\n")
    inner = f"/build/{kernel.release}"
    log = kernel_dir(cache, kernel) / "module-build.log"
    log.write_text("")
    with building(final) as tmp:
        # objtool (sid's) reads /proc/self/limits: the chroot needs /proc while it builds
        run(["mount", "-t", "proc", "proc", root / "proc"], "mounting /proc in the chroot")
        try:
            # file-prefix-map: the module's DWARF names pmdblab.c, not the scratch dir
            run(["chroot", root, "make", "-C", f"/usr/src/{headers.name}", f"M={inner}",
                 *ARCHES[kernel.arch].make_args, f"KCFLAGS=-ffile-prefix-map={inner}/=", "modules"],
                f"building {MODULE}.ko for {kernel.release}", log,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        finally:
            _umount_under(root)
        shutil.copy(work / f"{MODULE}.ko", tmp)
        shutil.copy(GUEST / f"{MODULE}.c", tmp)
        (tmp / "source.sha256").write_text(module_source_hash())
    shutil.rmtree(work, ignore_errors=True)
    return ko
