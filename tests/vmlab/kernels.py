"""The pinned kernels (kernels.toml) and fetching them: image, fw_cfg module, headers packages.

A kernel's packages are found by following Depends from linux-image-<release> and
linux-headers-<release>, keeping only the kernel's own packages (their names carry its ABI, or
are linux-kbuild-*), all at the pinned version. Sid splits the image into linux-binary-*,
linux-modules-* and linux-base-*; following Depends finds them without special cases.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.vmlab.arches import ARCHES
from tests.vmlab.common import LabError, building, say
from tests.vmlab.debindex import Package, fetch_deb, load_index, pick

KERNELS_TOML = Path(__file__).with_name("kernels.toml")
BIG_DEB = 20 << 20  # image .debs this big are deleted once the few files the lab needs are out


@dataclass(frozen=True)
class Kernel:
    """One pinned kernel line."""

    name: str
    suite: str
    dist: str
    archive: str
    release: str
    version: str
    arch: str = "amd64"  # the Debian architecture
    flavour: str = ""    # when not the arch's usual one: '-686' (i386 without PAE)

    @property
    def flavour_suffix(self) -> str:
        return self.flavour or ARCHES[self.arch].flavour

    @property
    def abi(self) -> str:
        """The release without its flavour ('6.1.0-57'): every own package name holds it."""
        return self.release.removesuffix(self.flavour_suffix)


def load_kernels(path: Path = KERNELS_TOML) -> dict[str, Kernel]:
    """Every pinned kernel, by name, in the file's order."""
    with open(path, "rb") as f:
        table = tomllib.load(f)["kernels"]
    kernels = {name: Kernel(name=name, **fields) for name, fields in table.items()}
    for k in kernels.values():
        if k.arch not in ARCHES or not k.release.endswith(k.flavour_suffix):
            raise LabError(f"kernels.toml: {k.name}: arch {k.arch!r} and release {k.release} disagree")
    return kernels


def select(names: str) -> list[Kernel]:
    """Kernels named by a comma list of names or releases, 'all' (the amd64 ones: what CI and
    the tests mean by every kernel) or 'all-<arch>' (all-arm64, all-i386)."""
    known = load_kernels()
    out = []
    for name in names.split(","):
        if name == "all" or name.startswith("all-"):
            want = name.removeprefix("all-") if name != "all" else "amd64"
            out += [k for k in known.values() if k.arch == want]
            continue
        hit = known.get(name) or next((k for k in known.values() if k.release == name), None)
        if hit is None:
            raise LabError(f"unknown kernel {name!r}; pinned: {', '.join(known)}")
        out.append(hit)
    return out


def kernel_dir(cache: Path, kernel: Kernel) -> Path:
    return cache / "kernels" / kernel.release


def _own(kernel: Kernel, name: str) -> bool:
    """Whether a dependency is one of the kernel's own packages (followed) or a tool (not)."""
    return name.startswith("linux-") and (kernel.abi in name or name.startswith("linux-kbuild-"))


def closure(kernel: Kernel, index: dict[str, list[Package]], root: str,
            skip_prefix: str = "") -> tuple[list[Package], list[str]]:
    """The kernel's own packages reachable from root, and the other (tool) dependencies."""
    own: list[Package] = []
    tools: list[str] = []
    todo, seen = [root], {root}
    while todo:
        pkg = pick(index, todo.pop(0), kernel.version)
        own.append(pkg)
        for dep in pkg.depends:
            if skip_prefix and dep.startswith(skip_prefix) or dep in seen:
                continue
            seen.add(dep)
            if _own(kernel, dep):
                todo.append(dep)
            elif dep not in ("linux-base", "libc6", "kmod", "initramfs-tools", "dracut"):
                tools.append(dep)
    return own, tools


def resolve(cache: Path, kernel: Kernel) -> dict[str, list]:
    """The kernel's packages ({'image': [...], 'headers': [...], 'tools': [...]}), cached as JSON.

    The JSON lets later steps (the module build, boots) run without the network.
    """
    saved = kernel_dir(cache, kernel) / "packages.json"
    if saved.exists():
        data = json.loads(saved.read_text())
        if data.get("version") == kernel.version:
            return data
    index = load_index(cache, kernel.archive, kernel.dist, arch=kernel.arch)
    if f"linux-image-{kernel.release}" not in index or not any(
            p.version == kernel.version for p in index[f"linux-image-{kernel.release}"]):
        index = load_index(cache, kernel.archive, kernel.dist, refresh=True, arch=kernel.arch)
    image, _ = closure(kernel, index, f"linux-image-{kernel.release}")
    headers, tools = closure(kernel, index, f"linux-headers-{kernel.release}", "linux-image-")
    data = {"version": kernel.version, "image": [asdict(p) for p in image],
            "headers": [asdict(p) for p in headers], "tools": sorted(set(tools))}
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(data, indent=1))
    return data


def packages(data: dict[str, list], part: str) -> list[Package]:
    return [Package(**{**p, "depends": tuple(p["depends"])}) for p in data[part]]


def _wanted(member: str) -> bool:
    """The few files of an image package the lab needs: /boot, the top of the modules dir
    (sid keeps vmlinuz, config and System.map there), fw_cfg, and virtio_mmio and
    virtio_console (arm64's truth channel: both modules in Debian's arm64 kernels)."""
    path = member.lstrip("./").removeprefix("usr/")
    parts = path.split("/")
    return (parts[0] == "boot" or "qemu_fw_cfg.ko" in path
            or "/virtio_console.ko" in path or "/virtio_mmio.ko" in path
            or (parts[:2] == ["lib", "modules"] and len(parts) == 4))


def _extract(deb: Path, dest: Path) -> None:
    """Unpack the wanted files of a .deb (dpkg-deb's data tar, filtered while it streams)."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            if _wanted(member.name) and (member.isfile() or member.issym()):
                tar.extract(member, dest, filter="tar")
    if proc.wait() != 0:
        raise LabError(f"dpkg-deb could not read {deb}")


def vmlinuz(image: Path, kernel: Kernel) -> Path | None:
    """The bootable kernel in an unpacked image: /boot (up to 6.12) or the modules dir (sid)."""
    for path in (image / "boot" / f"vmlinuz-{kernel.release}",
                 image / "usr" / "lib" / "modules" / kernel.release / "vmlinuz",
                 image / "lib" / "modules" / kernel.release / "vmlinuz"):
        if path.exists():
            return path
    return None


def fetch_image(cache: Path, kernel: Kernel) -> Path:
    """The unpacked image dir (vmlinuz, config, fw_cfg module), fetched once."""
    final = kernel_dir(cache, kernel) / "image"
    if final.exists() and vmlinuz(final, kernel):
        return final
    data = resolve(cache, kernel)
    with building(final) as tmp:
        for pkg in packages(data, "image"):
            deb = fetch_deb(cache, kernel.archive, pkg)
            say(f"unpacking {deb.name}")
            _extract(deb, tmp)
            if pkg.size > BIG_DEB:
                deb.unlink()
        if vmlinuz(tmp, kernel) is None:
            raise LabError(f"no vmlinuz in {kernel.name}'s image packages")
    return final


def fetch_headers(cache: Path, kernel: Kernel) -> list[Path]:
    """The headers .debs (linux-headers-*, -common, linux-kbuild-*), downloaded once.

    The module is built on this amd64 host, so a foreign kernel gets the amd64 linux-kbuild-*
    of the same version (its fixdep, modpost... must run here; the arch's would not, and
    would overwrite the amd64 kernel's in the shared chroot).
    """
    data = resolve(cache, kernel)
    own = packages(data, "headers")
    if kernel.arch != "amd64":
        kbuild = [p.name for p in own if p.name.startswith("linux-kbuild-")]
        own = [p for p in own if not p.name.startswith("linux-kbuild-")]
        index = load_index(cache, kernel.archive, kernel.dist)
        own += [pick(index, name, kernel.version) for name in kbuild]
    return [fetch_deb(cache, kernel.archive, p) for p in own]


def fw_cfg_module(image: Path) -> Path | None:
    """qemu_fw_cfg.ko* in the image, or None when the kernel has it built in."""
    return next(iter(sorted(image.rglob("qemu_fw_cfg.ko*"))), None)


def helper_modules(image: Path, virtio_console: bool = False) -> list[Path]:
    """The image's modules the guest loads before pmdblab: fw_cfg (for vmcoreinfo) and, when
    asked, virtio_mmio and virtio_console (the truth channel on arm64), those not built in."""
    pats = ["qemu_fw_cfg.ko*"] + (["virtio_mmio.ko*", "virtio_console.ko*"] if virtio_console else [])
    return [m for pat in pats for m in sorted(image.rglob(pat))[:1]]
