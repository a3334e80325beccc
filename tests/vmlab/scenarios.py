"""The ways the lab's guests die: each scenario's kernel arguments and what triggers it.

The guest's init (guest/init) reads pmdblab.scenario= and pulls the trigger itself, except for
`nmi`, where the host injects the NMI over QMP once the truth is out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tests.vmlab.arches import Arch
from tests.vmlab.common import LabError


@dataclass(frozen=True)
class Scenario:
    name: str
    why: str                  # one line for `list`
    cmdline: tuple[str, ...]  # kernel arguments beyond the lab's common ones
    host_nmi: bool = False    # the host sends an NMI after the truth arrives
    grace: int = 60           # seconds from the trigger to the panic, at most (TCG)
    module: bool = True       # the trigger is the pmdblab module (labapp ioctl)
    kdump: bool = False       # the guest's own kdump saves the dump (tests/vmlab/kdump.py)
    mem: str | None = None    # guest RAM for this scenario (else PMDB_LAB_MEM, 192M)
    truth_timeout: int = 300  # seconds from QEMU's start to the truth, at most (TCG)
    in_all: bool = True       # part of `all` (busy is not: it takes many minutes and GBs)
    swap_disk: bool = False   # a small virtio disk, the guest's /dev/vda, to swap on (netswap)

    @property
    def base(self) -> str:
        """What the guest is told to do: a repeat (``null@2``) does what ``null`` does."""
        return self.name.partition("@")[0]


def repeat(scenario: Scenario, k: int) -> Scenario:
    """The k-th run of a scenario (k >= 2), a set of its own (``null@2``): another boot,
    so other KASLR offsets and pids, for tests that need the same crash more than once."""
    if k < 2:
        raise LabError(f"a repeat is numbered from 2 (the first run is {scenario.base} itself), not {k}")
    return replace(scenario, name=f"{scenario.base}@{k}")


def refusal(scenario: Scenario, arch: Arch) -> str | None:
    """Why scenario cannot run on arch (one line), or None when it can."""
    if scenario.host_nmi and not arch.nmi:
        return f"{scenario.name} needs an x86 NMI (QMP inject-nmi); {arch.name} has none"
    if scenario.swap_disk and arch.name != "amd64":
        return f"{scenario.name}: its swap disk and virtio modules are set up for amd64 only"
    if scenario.base == "divide" and arch.name == "arm64":
        return "divide: arm64 integer division by zero does not trap (it yields 0)"
    return None


SCENARIOS = {s.name: s for s in [
    Scenario("sysrq", "echo c > /proc/sysrq-trigger (sysrq_handle_crash)", (), module=False),
    Scenario("null", "NULL pointer store in a module's ioctl; oops=panic", ()),
    Scenario("bug", "BUG_ON() in a module's ioctl; oops=panic", ()),
    Scenario("divide", "integer divide by zero in a module's ioctl; oops=panic", ()),
    Scenario("softlockup", "a module spins with preemption off; softlockup_panic=1",
             ("softlockup_panic=1", "watchdog_thresh=3"), grace=120),
    Scenario("hungtask", "a task sleeps in D state; hung_task_panic=1, 2 s timeout",
             ("hung_task_panic=1",), grace=120),
    Scenario("oom", "a process eats all memory; vm.panic_on_oom=1", (), grace=180, module=False),
    Scenario("nmi", "QMP inject-nmi with unknown_nmi_panic=1", ("unknown_nmi_panic=1",),
             host_nmi=True, module=False),
    Scenario("kdump", "sysrq's crash caught by the guest's own kdump: /proc/vmcore (ELF32 on "
             "i386) and the guest's makedumpfile", ("crashkernel=128M",), grace=90, module=False,
             kdump=True),
    Scenario("stackoverflow", "unbounded recursion in a module hits the vmap stack guard", ()),
    # a big, busy machine for pmdb at scale (issue 20): labapp busy's numbers are in the init
    Scenario("busy", "4 GB, 10,000 sleeping threads in 200 processes, >1M slab objects (tmpfs "
             "files, sockets, pipes), thousands of VMAs; then sysrq", (), module=False,
             mem="4G", truth_timeout=1800, in_all=False),
    # real sockets and an active swap device for crash's net -s, swap and files (issue 14)
    Scenario("netswap", "TCP/UDP over IPv4 and IPv6 on lo, unix sockets, and pages swapped out "
             "to a 32 MB virtio disk; then sysrq", (), module=False, swap_disk=True, in_all=False),
]}


def select(names: str) -> list[Scenario]:
    """Scenarios named by a comma list, or 'all'."""
    if names == "all":
        return [s for s in SCENARIOS.values() if s.in_all]
    out = []
    for name in names.split(","):
        base, at, k = name.partition("@")
        if base not in SCENARIOS:
            raise LabError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)} (a repeat: null@2)")
        if at and not k.isdigit():
            raise LabError(f"a repeat is scenario@N with N a number, not {name!r}")
        out.append(repeat(SCENARIOS[base], int(k)) if at else SCENARIOS[base])
    return out


def with_repeats(chosen: list[Scenario], count: int) -> list[Scenario]:
    """Each scenario then its repeats @2..@count (``make --repeat count``)."""
    return [r for s in chosen for r in [s, *(repeat(s, k) for k in range(2, count + 1))]]
