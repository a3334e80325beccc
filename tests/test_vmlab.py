"""The kernel lab's own parts: archive index parsing, truth parsing, and one real dump (6.1 sysrq).

The pure tests read real data the lab fetched or made (tests/vmlab/testdata). The QEMU test
makes (or reuses from $PMDB_LAB_CACHE) a dump set; without QEMU, root or the network it skips,
unless PMDB_REQUIRE_FIXTURES=1, where it fails.
"""

from __future__ import annotations

import lzma
import os
import shutil
import socket
import struct
from pathlib import Path

import pytest

from tests.vmlab import dumps
from tests.vmlab.arches import ARCHES
from tests.vmlab.chroot import cross_gcc, cross_packages
from tests.vmlab.dbg import _is_vmlinux, dbg_vmlinux, select_dbg
from tests.vmlab.debindex import Package, index_path, index_url, parse_depends, parse_packages, pick
from tests.vmlab.foreignmdf import runtime_closure
from tests.vmlab.kernels import Kernel, closure, load_kernels
from tests.vmlab.kernels import select as select_kernels
from tests.vmlab.make import base_cmdline
from tests.vmlab.qemu import panic_finished, panic_reason, qemu_command
from tests.vmlab.scenarios import SCENARIOS, refusal
from tests.vmlab.truth import load_truth, parse_stack, parse_stat, split_head, tree_path, unpack_serial

DATA = Path(__file__).parent / "vmlab" / "testdata"
SID = Kernel("7.2", "sid", "sid", "debian", "7.2.13+deb14-amd64", "7.2.13-1")


def sid_index() -> dict:
    return parse_packages(lzma.decompress((DATA / "Packages-sid-snippet.xz").read_bytes()).decode())


def test_parse_depends_keeps_first_alternatives() -> None:
    text = "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool"
    assert parse_depends(text) == ("kmod", "linux-base", "initramfs-tools")
    assert parse_depends("") == ()


def test_parse_packages_reads_real_sid_stanzas() -> None:
    index = sid_index()
    image = pick(index, "linux-binary-7.2.13+deb14-amd64", "7.2.13-1")
    assert image.filename.startswith("pool/main/l/linux-signed-amd64/linux-binary-7.2.13+deb14-amd64_")
    assert len(image.sha256) == 64 and image.size > 1_000_000
    assert "linux-base-7.2.13+deb14-amd64" in image.depends
    assert set(parse_packages(lzma.decompress((DATA / "Packages-sid-snippet.xz").read_bytes()).decode(),
                              prefix="linux-kbuild")) == {"linux-kbuild-7.2.13+deb14"}


def test_closure_follows_sids_split_image_and_names_the_compiler() -> None:
    index = sid_index()
    image, _ = closure(SID, index, "linux-image-7.2.13+deb14-amd64")
    assert {p.name for p in image} == {
        "linux-image-7.2.13+deb14-amd64", "linux-base-7.2.13+deb14-amd64",
        "linux-binary-7.2.13+deb14-amd64", "linux-modules-7.2.13+deb14-amd64"}
    headers, tools = closure(SID, index, "linux-headers-7.2.13+deb14-amd64", "linux-image-")
    assert "linux-kbuild-7.2.13+deb14" in {p.name for p in headers}
    assert "gcc-16-for-host" in tools and "pahole" in tools


def test_a_gone_version_is_one_clear_line() -> None:
    with pytest.raises(Exception, match=r"pinned linux-image-7.2.13\+deb14-amd64 7.2.12-1 is gone .* holds 7.2.13-1"):
        pick(sid_index(), "linux-image-7.2.13+deb14-amd64", "7.2.12-1")


def test_pins_cover_every_kernel_line() -> None:
    kernels = load_kernels()
    amd64 = [k.name for k in kernels.values() if k.arch == "amd64"]
    assert amd64 == ["5.10", "6.1", "6.12-bpo", "6.12", "7.2"]
    assert {k.suite for k in kernels.values()} == {"bullseye", "bookworm", "trixie", "sid"}
    assert [k.name for k in select_kernels("all")] == amd64
    assert [k.name for k in select_kernels("all-arm64")] == ["6.1-arm64", "6.12-arm64", "7.2-arm64"]
    assert [k.name for k in select_kernels("all-i386,6.1")] == ["5.10-i386", "6.1-i386", "6.1-i386-686", "6.1"]
    assert kernels["6.1-i386-686"].abi == "6.1.0-57" and kernels["6.1-i386-686"].flavour_suffix == "-686"


def test_abi_strips_every_flavour() -> None:
    kernels = load_kernels()
    assert kernels["6.1"].abi == kernels["6.1-i386"].abi == kernels["6.1-arm64"].abi == "6.1.0-57"
    assert kernels["7.2-arm64"].abi == "7.2.13+deb14"
    assert kernels["5.10-i386"].abi == "5.10.0-32"


def test_dbg_names_the_fixture_kernel_and_the_pinned_ones(tmp_path: Path) -> None:
    """`dbg` takes a pinned kernel or a [dbg-only] one, and unpacks only the vmlinux, from
    either place the -dbg packages keep it."""
    (fixture,) = select_dbg("6.1-fixture")
    assert (fixture.release, fixture.version, fixture.archive) == ("6.1.0-56-amd64", "6.1.192-2", "debian-security")
    assert [k.release for k in select_dbg("all-i386")] == ["5.10.0-32-686-pae", "6.1.0-57-686-pae", "6.1.0-57-686"]
    assert select_dbg("6.1.0-56-amd64") == [fixture]
    assert dbg_vmlinux(tmp_path, fixture) == tmp_path / "kernels/6.1.0-56-amd64/dbg/vmlinux-6.1.0-56-amd64"
    assert _is_vmlinux("./usr/lib/debug/boot/vmlinux-6.1.0-56-amd64", "6.1.0-56-amd64")
    assert _is_vmlinux("./usr/lib/debug/lib/modules/7.2.13+deb14-amd64/vmlinux", "7.2.13+deb14-amd64")
    assert not _is_vmlinux("./usr/lib/debug/lib/modules/6.1.0-56-amd64/kernel/fs/ext4/ext4.ko", "6.1.0-56-amd64")


def test_per_arch_index_and_cross_tools(tmp_path: Path) -> None:
    assert index_url("debian", "sid", "arm64").endswith("/dists/sid/main/binary-arm64/Packages.xz")
    assert index_path(tmp_path, "debian", "sid").name == "debian_sid_Packages.xz"  # amd64's, as before
    assert index_path(tmp_path, "debian", "sid", "i386").name == "debian_sid_i386_Packages.xz"
    assert cross_packages("arm64", ["gcc-12", "libssl3"]) == ["gcc-12-aarch64-linux-gnu", "libc6-dev-arm64-cross"]
    assert cross_packages("arm64", ["gcc-16-for-host", "pahole"])[0] == "gcc-16-aarch64-linux-gnu"
    assert cross_gcc("arm64", ["gcc-14"]) == "aarch64-linux-gnu-gcc-14"
    assert cross_packages("i386", ["linux-compiler-gcc-12-x86"]) == []


def test_qemu_argv_and_cmdline_per_arch(tmp_path: Path) -> None:
    amd64 = qemu_command(Path("k"), Path("i"), "c", tmp_path, "tcg", "192M", 2)
    assert amd64[:7] == ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-cpu", "qemu64"]
    assert amd64.count("-serial") == 2
    arm = qemu_command(Path("k"), Path("i"), "c", tmp_path, "tcg", "192M", 2, ARCHES["arm64"])
    assert arm[0] == "qemu-system-aarch64" and "virtconsole,chardev=truth" in arm and arm.count("-serial") == 1
    assert base_cmdline(ARCHES["amd64"]) == "console=ttyS0,115200 panic=0 oops=panic loglevel=4"
    assert base_cmdline(ARCHES["arm64"]).startswith("console=ttyAMA0,115200 ")
    assert base_cmdline(ARCHES["arm64"]).endswith(" pmdblab.truth=hvc0")
    assert base_cmdline(ARCHES["i386"]) == base_cmdline(ARCHES["amd64"])


def test_scenarios_an_arch_cannot_run_are_refused() -> None:
    assert refusal(SCENARIOS["nmi"], ARCHES["arm64"]) is not None
    assert refusal(SCENARIOS["nmi"], ARCHES["i386"]) is None
    assert refusal(SCENARIOS["divide"], ARCHES["arm64"]) is not None
    assert refusal(SCENARIOS["sysrq"], ARCHES["arm64"]) is None


def test_foreign_makedumpfile_follows_runtime_depends() -> None:
    def pkg(name: str, *deps: str) -> Package:
        return Package(name, "1", f"pool/{name}.deb", "", 0, deps)

    index = {p.name: [p] for p in [pkg("makedumpfile", "perl", "libc6", "libdw1"), pkg("perl", "libc6"),
                                   pkg("libc6", "libgcc-s1"), pkg("libgcc-s1", "libc6"),
                                   pkg("libdw1", "libc6", "libelf1"), pkg("libelf1", "libc6")]}
    assert [p.name for p in runtime_closure(index, "makedumpfile")] == [
        "makedumpfile", "libc6", "libdw1", "libgcc-s1", "libelf1"]
    assert ARCHES["arm64"].qemu_user == "qemu-aarch64" and not ARCHES["arm64"].makedumpfile


def test_arm64_panic_reason() -> None:
    console = ("[    3.893568] Kernel panic - not syncing: sysrq triggered crash\n[    3.894117] Hardware name: "
               "linux,dummy-virt (DT)\n[    3.897622] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---\n")
    assert panic_reason(console) == "sysrq triggered crash" and panic_finished(console)


def test_formats_and_aliases() -> None:
    assert dumps.parse_formats("elf,makedumpfile") == ["elf", "mdf", "flat"]
    assert dumps.parse_formats("all") == list(dumps.FILES)
    with pytest.raises(Exception, match="unknown dump format"):
        dumps.parse_formats("elf,core")


def test_truth_pieces() -> None:
    assert parse_stat("42 (a (b) c) S 1 42 42 0 -1 4194560 0") == (42, "a (b) c", "S", 1, 4194560)
    assert parse_stack("[<0>] do_select+0x5a0/0x7a0\n[<0>] core_sys_select+0x1b0/0x3b0\n") == [
        "do_select", "core_sys_select"]
    assert split_head("==> /a <==\n1\n\n==> /b <==\n2\n") == {"/a": "1\n", "/b": "2\n"}
    assert tree_path("/proc/7/task/9/stack") == "tasks/7/task/9/stack"
    assert tree_path("/proc/7/task/7/stack") is None  # the leader is already tasks/7
    assert tree_path("/proc/meminfo") == "meminfo"


def test_truth_from_a_real_guest(tmp_path: Path) -> None:
    """A truth the lab received from a 6.1 guest (sysrq scenario), decoded and read back."""
    unpack_serial((DATA / "truth-6.1-sysrq.serial").read_text(errors="replace"), tmp_path)
    truth = load_truth(tmp_path)
    assert truth.release == "6.1.0-57-amd64" and truth.scenario == "sysrq"
    assert truth.tasks[1].comm == "init" and truth.tasks[2].comm == "kthreadd"
    assert truth.tasks[2].kernel_thread and not truth.tasks[1].kernel_thread
    labapp = next(t for t in truth.tasks.values() if t.comm == "labapp")
    assert [t.comm for t in labapp.threads] == ["labthr-1", "labthr-2", "labthr-3"]
    cat = next(t for t in truth.tasks.values() if t.comm == "cat")
    assert "fifo_open" in cat.stack  # blocked opening the FIFO for reading
    assert truth.slabs["task_struct"].objsize > 1000
    assert set(truth.modules) == {"pmdblab", "qemu_fw_cfg"}
    assert truth.modules["pmdblab"].address == truth.module_addresses["record_hit"] & ~0xFFF
    assert truth.meminfo["MemTotal"] > 100_000
    assert truth.kallsyms["_text"] % (2 << 20) == 0
    assert ("proc", "/proc", "proc") in truth.mounts


# ---- a real dump, made by QEMU --------------------------------------------------------------

def _lab_unavailable() -> str | None:
    """Why the lab cannot make a dump here, or None."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed"
    if os.geteuid() != 0:
        return "the lab builds its module in a chroot: root only"
    for tool in ("debootstrap", "makedumpfile", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        socket.create_connection(("deb.debian.org", 80), timeout=5).close()
    except OSError:
        return "deb.debian.org is unreachable"
    return None


def _notes(elf: Path) -> dict[str, bytes]:
    """The ELF's notes by name (the last of each name)."""
    out = {}
    with open(elf, "rb") as f:
        ehdr = f.read(64)
        phoff, = struct.unpack_from("<Q", ehdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        for i in range(phnum):
            p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
            if p_type != 4:  # PT_NOTE
                continue
            f.seek(p_offset)
            blob, pos = f.read(p_filesz), 0
            while pos + 12 <= len(blob):
                namesz, descsz, _ = struct.unpack_from("<III", blob, pos)
                name = blob[pos + 12:pos + 12 + namesz].rstrip(b"\0").decode()
                desc_at = pos + 12 + (namesz + 3) // 4 * 4
                out[name] = blob[desc_at:desc_at + descsz]
                pos = desc_at + (descsz + 3) // 4 * 4
    return out


@pytest.fixture(scope="module")
def sysrq_61() -> Path:
    """The 6.1 sysrq set: from the cache when made, else made now (about a minute, or a few
    more on a new cache: downloads, the bookworm chroot)."""
    from tests.vmlab.common import cache_root
    from tests.vmlab.make import dump_dir, finished, make
    from tests.vmlab.scenarios import SCENARIOS

    formats = ["elf", "kdump-zlib"]
    kernel = load_kernels()["6.1"]
    # a set made with other formats (.ci/run makes elf,mdf) is used as it is: making it
    # again here would replace, under the other tests, the dumps and truth they read
    if finished(dump_dir(cache_root(), kernel, "sysrq"), ["elf"]):
        return dump_dir(cache_root(), kernel, "sysrq")
    why = _lab_unavailable()
    if why is not None:
        if os.environ.get("PMDB_REQUIRE_FIXTURES") == "1":
            pytest.fail(f"the kernel lab cannot run: {why}")
        pytest.skip(f"the kernel lab cannot run: {why}")
    return make(cache_root(), kernel, SCENARIOS["sysrq"], formats)


def test_lab_makes_a_61_sysrq_dump_with_its_truth(sysrq_61: Path) -> None:
    notes = _notes(sysrq_61 / "vmcore.elf")
    assert "VMCOREINFO" in notes, "QEMU's -device vmcoreinfo did not get the guest's note"
    info = dict(line.split("=", 1) for line in notes["VMCOREINFO"].decode().splitlines() if "=" in line)
    assert info["OSRELEASE"] == load_kernels()["6.1"].release
    qemu_kdump = sysrq_61 / "vmcore.kdump-zlib"
    if qemu_kdump.exists():
        assert qemu_kdump.read_bytes()[:12] == b"makedumpfile"  # QEMU 7.2: flattened
    truth = load_truth(sysrq_61)
    assert len(truth.tasks) >= 10
    assert truth.release == info["OSRELEASE"]
    assert "sysrq triggered crash" in (sysrq_61 / "console.log").read_text(errors="replace")
