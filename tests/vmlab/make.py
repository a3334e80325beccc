"""Make one dump set: boot a pinned kernel, take its truth, crash it, dump it, cache it all.

A set lives in $PMDB_LAB_CACHE/dumps/<release>/<scenario>/ and is made under a temp name and
renamed when whole, so a set that exists is finished (meta.json says what is in it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.vmlab import accel, foreignmdf, initramfs, kdump, qemu
from tests.vmlab.arches import ARCHES, Arch
from tests.vmlab.chroot import build_module
from tests.vmlab.common import LabError, building, say
from tests.vmlab.dumps import FILES, QEMU_FORMATS, makedumpfile
from tests.vmlab.kernels import Kernel, fetch_image, helper_modules, vmlinuz
from tests.vmlab.scenarios import Scenario, refusal
from tests.vmlab.truth import END, TruthError, unpack_serial

BASE_CMDLINE = "console=ttyS0,115200 panic=0 oops=panic loglevel=4"


def base_cmdline(arch: Arch) -> str:
    """The common kernel arguments: amd64's unchanged; others name their console and truth."""
    if arch.name == "amd64":
        return BASE_CMDLINE
    extra = "" if arch.truth_tty == "ttyS1" else f" pmdblab.truth={arch.truth_tty}"
    return BASE_CMDLINE.replace("ttyS0", arch.console) + extra
TRUTH_TIMEOUT = 300  # seconds from QEMU's start to the truth, at most (a slow TCG boot)
# what the guest's init records, as meta.json's truth_version: 2 added every task's
# /proc/PID/maps and /proc/vmallocinfo (for vm and kmem -v); sets with less are made again
TRUTH_VERSION = 2


SWAP_DISK = "swap.disk"     # the netswap guest's /dev/vda (deleted once the dumps are made)
SWAP_BYTES = 32 << 20


def swap_disk(work: Path) -> list[str]:
    """QEMU arguments for the empty 32 MB raw disk the guest swaps on (a sparse file)."""
    path = work / SWAP_DISK
    with open(path, "wb") as f:
        f.truncate(SWAP_BYTES)
    return ["-drive", f"file={path},format=raw,if=none,id=swap",
            "-device", "virtio-blk-pci,drive=swap"]


def dump_dir(cache: Path, kernel: Kernel, scenario: str) -> Path:
    return cache / "dumps" / kernel.release / scenario


def finished(directory: Path, formats: list[str]) -> bool:
    """Whether a set exists with every format asked for, and a truth as full as the guest's
    init records now (a set from an older init is made again)."""
    meta = directory / "meta.json"
    if not meta.exists():
        return False
    data = json.loads(meta.read_text())
    if data.get("truth_version", 1) < TRUTH_VERSION:
        return False
    return set(formats) <= set(data["formats"]) | set(data.get("unsupported", []))


def guest_settings() -> tuple[str, int]:
    """Guest RAM and vCPUs (PMDB_LAB_MEM, PMDB_LAB_SMP): small RAM keeps ELF dumps small."""
    return os.environ.get("PMDB_LAB_MEM", "192M"), int(os.environ.get("PMDB_LAB_SMP", "2"))


def prepare(cache: Path, kernel: Kernel, scenario: Scenario) -> tuple[Path, list[Path], bool]:
    """The kernel to boot, the modules for its initramfs (fw_cfg and virtio_console when
    modules, pmdblab last), and whether pmdblab is among them.

    On amd64 pmdblab is always loaded (its sets always had it). Elsewhere a scenario that does
    not need it (sysrq) goes on without it when its cross build fails, saying so.
    """
    image = fetch_image(cache, kernel)
    kimage = vmlinuz(image, kernel)
    assert kimage is not None
    modules = helper_modules(image, virtio_console=ARCHES[kernel.arch].truth_tty.startswith("hvc"))
    try:
        modules.append(build_module(cache, kernel))
    except LabError as e:
        if scenario.module or kernel.arch == "amd64":
            raise
        say(f"{kernel.name}: no pmdblab.ko ({e}); {scenario.name} does not need it")
        return kimage, modules, False
    return kimage, modules, True


def probe(kimage: Path, initrd: Path, work: Path, how: str, timeout: float,
          arch: Arch = ARCHES["amd64"]) -> float:
    """Seconds from QEMU's start to the init's first marker under accelerator `how`."""
    mem, smp = guest_settings()
    guest = qemu.boot(kimage, initrd, f"{base_cmdline(arch)} pmdblab.scenario=probe", work, how,
                      mem, smp, arch)
    try:
        return guest.wait("init marker", lambda: "pmdblab-init: init started" in guest.console_text(), timeout)
    finally:
        guest.stop()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def crash(guest: qemu.Guest, scenario: Scenario) -> dict[str, object]:
    """Wait for the truth, pull the trigger if the host holds it, wait for the panic."""
    guest.wait("truth from the guest", lambda: END in _read(guest.truth_serial)
               or qemu.panic_reason(guest.console_text()) is not None,
               max(TRUTH_TIMEOUT, scenario.truth_timeout))
    t_truth = time.monotonic() - guest.started
    if END not in _read(guest.truth_serial):
        raise LabError(f"the kernel panicked before sending the truth: "
                       f"{qemu.panic_reason(guest.console_text())}; see {guest.console}")
    if scenario.host_nmi:
        guest.qmp().command("inject-nmi")
    alive_since: list[float] = []
    panic_since: list[float] = []

    def panicked() -> bool:
        text = guest.console_text()
        if qemu.panic_finished(text):
            return True
        if qemu.panic_reason(text) is not None:  # no closing line: give it 3 s to finish
            panic_since.append(time.monotonic())
            return panic_since[-1] - panic_since[0] > 3
        if "pmdblab-init: still alive" in text:
            alive_since.append(time.monotonic())
            if alive_since[-1] - alive_since[0] > 10:
                raise LabError(f"scenario {scenario.name} did not panic the kernel; see {guest.console}")
        return False

    t_panic = guest.wait(f"panic ({scenario.name})", panicked, scenario.grace)
    time.sleep(1)  # let the other CPUs stop: panic's own lines end before they are parked
    return {"truth": round(t_truth, 1), "panic": round(t_panic, 1),
            "panic_reason": qemu.panic_reason(guest.console_text())}


def take_dumps(guest: qemu.Guest, out: Path, formats: list[str]) -> list[str]:
    """QEMU's dumps of the stopped guest; the ELF too when makedumpfile needs it."""
    qmp = guest.qmp()
    qmp.command("stop")  # every dump shows the same moment
    supported = qemu.dump_formats(guest)
    wanted = [f for f in QEMU_FORMATS if f in formats or (f == "elf" and {"mdf", "flat"} & set(formats))]
    made = []
    for fmt in wanted:
        if fmt not in supported:
            say(f"this QEMU cannot write {fmt} dumps; skipped")
            continue
        say(f"dump-guest-memory {fmt}")
        qmp.command("dump-guest-memory", paging=False, protocol=f"file:{out / FILES[fmt]}", format=fmt)
        made.append(fmt)
    return made


def qemu_version(arch: Arch) -> str:
    out = subprocess.run([arch.qemu, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


def make(cache: Path, kernel: Kernel, scenario: Scenario, formats: list[str], force: bool = False) -> Path:
    """The dump set of kernel x scenario with formats, made unless a finished one exists."""
    final = dump_dir(cache, kernel, scenario.name)
    if not force and finished(final, formats):
        say(f"{kernel.name} {scenario.name}: already made ({final})")
        return final
    arch = ARCHES[kernel.arch]
    why_not = refusal(scenario, arch)
    if why_not:
        raise LabError(f"{kernel.name}: {why_not}")
    kimage, modules, with_module = prepare(cache, kernel, scenario)
    mem, smp = guest_settings()
    if scenario.kdump:
        mem = kdump.MEM
    mem = scenario.mem or mem
    with building(final) as out:
        initrd = initramfs.build(cache, out / "initramfs.cpio", modules, kernel,
                                 kdump_kernel=kimage if scenario.kdump else None,
                                 disk_modules=kdump.virtio_modules(cache, kernel) if scenario.swap_disk else None)
        how = accel.choose(cache, lambda a, t: probe(kimage, initrd, out, a, t, arch)) if arch.kvm else "tcg"
        cmdline = " ".join([base_cmdline(arch), *scenario.cmdline, f"pmdblab.scenario={scenario.base}"])
        say(f"{kernel.name} {scenario.name}: booting {kernel.release} ({how}, {arch.machine}, "
            f"{arch.cpu}, {mem}, {smp} CPUs)")
        guest = qemu.boot(kimage, initrd, cmdline, out, how, mem, smp, arch,
                          tuple(kdump.disks(out)) if scenario.kdump else
                          tuple(swap_disk(out)) if scenario.swap_disk else ())
        try:
            times = crash(guest, scenario)
            say(f"{kernel.name} {scenario.name}: panic after {times['panic']} s: {times['panic_reason']}")
            t0 = time.monotonic()
            if scenario.kdump:
                kdump.wait_for_capture(guest)
                made = []
            else:
                made = take_dumps(guest, out, formats)
        finally:
            guest.stop()
        if scenario.kdump:
            made = kdump.collect(out, out)
        try:
            unpack_serial(_read(guest.truth_serial), out)
        except TruthError as e:
            raise LabError(f"{kernel.name} {scenario.name}: {e}") from e
        if scenario.kdump:
            pass                 # the guest's own makedumpfile wrote vmcore.mdf
        elif arch.makedumpfile or not {"mdf", "flat"} & set(formats):
            made += makedumpfile(out / FILES["elf"], out, formats, out / "makedumpfile.log")
        elif arch.qemu_user:  # the host's makedumpfile reads only x86-64: the arch's own
            made += makedumpfile(out / FILES["elf"], out, formats, out / "makedumpfile.log",
                                 foreignmdf.makedumpfile_argv(cache, arch))
        else:
            say(f"no makedumpfile reads {arch.name} dumps here; mdf/flat recorded as unsupported")
        if "elf" not in formats and "elf" in made:
            (out / FILES["elf"]).unlink(missing_ok=True)
            made.remove("elf")
        times["dumps"] = round(time.monotonic() - t0, 1)
        for name in ("initramfs.cpio", "qmp.sock", SWAP_DISK):
            (out / name).unlink(missing_ok=True)
        for fmt in made:
            (out / FILES[fmt]).chmod(0o644)  # QEMU writes its dumps 0400
        if with_module:
            shutil.copy(modules[-1], out / "pmdblab.ko")
        meta = {"kernel": kernel.name, "arch": arch.name, "machine": arch.machine, "cpu": arch.cpu,
                "module": with_module, "release": kernel.release, "version": kernel.version,
                "suite": kernel.suite, "scenario": scenario.name, "cmdline": cmdline,
                "accel": how, "mem": mem, "smp": smp, "seconds": times,
                "formats": {f: FILES[f] for f in made},
                "unsupported": [f for f in formats if f not in made], "qemu": qemu_version(arch),
                "made": time.strftime("%Y-%m-%d %H:%M:%S"), "truth_version": TRUTH_VERSION}
        (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    say(f"{kernel.name} {scenario.name}: done: {final}")
    return final
