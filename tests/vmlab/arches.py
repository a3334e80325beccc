"""What differs between the lab's guest architectures, in one table: QEMU, console, tools.

Each Debian architecture the lab boots (amd64, i386, arm64) names its QEMU binary, machine
and CPU, the console and truth channels the init writes to, how to compile the static labapp,
and what the module build's make needs (ARCH=, CROSS_COMPILE=). Nothing else in the lab
branches on the architecture except through these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.vmlab.common import LabError


@dataclass(frozen=True)
class Arch:
    name: str                    # the Debian architecture (binary-<name>/Packages.xz)
    flavour: str                 # the kernel flavour ending each release ('-686-pae')
    qemu: str                    # qemu-system-* binary
    qemu_package: str            # the Debian package that has it
    machine: str
    cpu: str
    console: str                 # the guest's console= device (a serial port written to a file)
    truth_tty: str               # where the init writes the truth (a second channel)
    cc: tuple[str, ...]          # compiles labapp statically on the host (unless chroot_cc)
    cc_package: str
    make_args: tuple[str, ...]   # extra make arguments for the module build
    chroot_cc: str = ""          # the cross triplet whose gcc-N-<triplet> the suite chroot
                                 # gets, for the module and labapp ('' = the host's gcc)
    kvm: bool = True             # whether an x86-64 host's KVM can run it
    makedumpfile: bool = True    # whether the host's (amd64) makedumpfile reads its dumps
    qemu_user: str = ""          # else: the qemu-user binary that runs the arch's own one
    nmi: bool = True             # QMP inject-nmi reaches the guest as an NMI


ARCHES = {a.name: a for a in [
    # q35 + qemu64: 4-level paging, no la57
    Arch("amd64", "-amd64", "qemu-system-x86_64", "qemu-system-x86", "q35", "qemu64",
         "ttyS0", "ttyS1", ("gcc",), "gcc libc6-dev", ()),
    # qemu32 has PAE (and CMOV), which the 686-pae kernels need; q35 gives it two 16550s too.
    # No makedumpfile: bookworm's i386 one, under qemu-i386, segfaults on QEMU's i386 ELF
    # (an ELF64 core) before printing anything; the host's reads only x86-64
    Arch("i386", "-686-pae", "qemu-system-i386", "qemu-system-x86", "q35", "qemu32",
         "ttyS0", "ttyS1", ("gcc", "-m32"), "gcc-multilib", ("ARCH=x86",),
         makedumpfile=False),
    # virt has one PL011 (the console); the truth goes to a virtio console (hvc0). cpu max has
    # pointer authentication; pauth-impdef keeps TCG fast (QARMA is slow to emulate)
    Arch("arm64", "-arm64", "qemu-system-aarch64", "qemu-system-arm", "virt",
         "max,pauth-impdef=on", "ttyAMA0", "hvc0", ("aarch64-linux-gnu-gcc",),
         "(in the suite chroot) gcc-N-aarch64-linux-gnu libc6-dev-arm64-cross",
         ("ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"), chroot_cc="aarch64-linux-gnu",
         kvm=False, makedumpfile=False, qemu_user="qemu-aarch64", nmi=False),
]}


def arch(name: str) -> Arch:
    if name not in ARCHES:
        raise LabError(f"unknown arch {name!r}; known: {', '.join(ARCHES)}")
    return ARCHES[name]
