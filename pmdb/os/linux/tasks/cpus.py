"""The CPUs of a crashed kernel: which were online, what each ran, and their registers.

Registers come from the dump's notes as the CPU's kernel parts read them
(pmdb.os.linux.arch: NT_PRSTATUS, kdump's saved crash_notes or QEMU's live CPU
state, one per CPU in CPU order, else the CPU's own notes); a dump without them
falls back to the ``crash_notes`` per-CPU buffers in the kernel's memory. What each CPU ran
comes from its runqueue (``runqueues`` per-CPU: ``curr``, ``idle``, ``nr_running``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pmdb.arch import Arch
from pmdb.arch.prstatus import NT_PRSTATUS, decode_prstatus
from pmdb.dumps.base import Note
from pmdb.errors import FaultError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import KernelLayout, kernel_arch
from pmdb.symbols.kmodules import StructOffsets

Lookup = Callable[[str], "int | None"]


@dataclass
class Cpu:
    """One CPU: whether it is present and online, its runqueue and current task."""

    index: int
    present: bool = True
    online: bool = True
    runqueue: int | None = None
    curr: int | None = None          # the task running on it (runqueues.curr)
    idle: int | None = None          # its idle task (swapper/N)
    nr_running: int = 0
    registers: dict[str, int] = field(default_factory=dict)
    pid_in_note: int | None = None


def read_mask(mem: AddressSpace, addr: int | None, nbits: int) -> set[int] | None:
    """The CPUs set in a cpumask (``__cpu_online_mask`` ...); None when unreadable."""
    if addr is None:
        return None
    nbytes = max(8, (nbits + 63) // 64 * 8)
    try:
        raw = int.from_bytes(mem.read(addr, nbytes), "little")
    except FaultError:
        return None
    return {i for i in range(nbytes * 8) if raw >> i & 1}


def cpu_count(present: set[int] | None, nr_cpu_ids: int) -> int:
    """How many CPUs to show: up to the highest present one (crash's count), else nr_cpu_ids."""
    return max(present) + 1 if present else nr_cpu_ids


def read_cpus(mem: AddressSpace, layout: KernelLayout, lookup: Lookup, offsets: StructOffsets,
              notes: Sequence[Note], arch: Arch) -> list[Cpu]:
    """Every CPU up to the highest present one, with its runqueue and registers."""
    present = read_mask(mem, lookup("__cpu_present_mask"), layout.nr_cpu_ids)
    online = read_mask(mem, lookup("__cpu_online_mask"), layout.nr_cpu_ids)
    n = min(cpu_count(present, layout.nr_cpu_ids), layout.nr_cpu_ids)
    cpus = [Cpu(i, present=present is None or i in present, online=online is None or i in online)
            for i in range(n)]
    _runqueues(mem, layout, lookup, offsets, cpus)
    regs = kernel_arch(arch).note_registers(notes, arch)
    if not regs:
        regs = _crash_notes(mem, layout, lookup, arch, n)
    if present is None and len(regs) > n:
        # no nr_cpu_ids nor cpu masks to go by (kallsyms without data symbols): one CPU a note
        cpus += [Cpu(i) for i in range(n, len(regs))]
    _assign(cpus, regs)
    return cpus


def _runqueues(mem: AddressSpace, layout: KernelLayout, lookup: Lookup, offsets: StructOffsets,
               cpus: list[Cpu]) -> None:
    base = lookup("runqueues")
    if base is None:
        return
    try:
        off_curr = offsets.offsetof("rq", "curr")
        off_idle = offsets.offsetof("rq", "idle")
        off_nr = offsets.offsetof("rq", "nr_running")
    except SymbolError:
        return
    for cpu in cpus:
        try:
            rq = layout.per_cpu_address(base, cpu.index)
            cpu.runqueue = rq
            cpu.curr = mem.ptr(rq + off_curr)
            cpu.idle = mem.ptr(rq + off_idle)
            cpu.nr_running = mem.u32(rq + off_nr)
        except PmdbError:
            continue


def _crash_notes(mem: AddressSpace, layout: KernelLayout, lookup: Lookup, arch: Arch,
                 ncpus: int) -> list[tuple[int, dict[str, int]]]:
    """The NT_PRSTATUS that crash_save_cpu() wrote in each CPU's ``crash_notes`` buffer."""
    var = lookup("crash_notes")
    if var is None:
        return []
    out: list[tuple[int, dict[str, int]]] = []
    try:
        pcpu = mem.ptr(var)
        for cpu in range(ncpus):
            at = layout.per_cpu_address(pcpu, cpu)
            namesz, descsz, ntype = struct.unpack("<III", mem.read(at, 12))
            if ntype != NT_PRSTATUS or namesz != 5 or not 0 < descsz < 4096:
                out.append((0, {}))
                continue
            desc = mem.read(at + 12 + 8, descsz)
            st = decode_prstatus(desc, arch)
            out.append((st.pid, st.registers))
    except (PmdbError, struct.error):
        return out
    return out if any(regs for _, regs in out) else []


def _assign(cpus: list[Cpu], regs: list[tuple[int, dict[str, int]]]) -> None:
    """Notes are per CPU in order; when there are fewer notes than CPUs, kdump wrote them
    only for the CPUs that were online, so they go to those in order."""
    if not regs:
        return
    targets = cpus
    if len(regs) < len(cpus):
        online = [c for c in cpus if c.online]
        if len(online) == len(regs):
            targets = online
    for cpu, (pid, r) in zip(targets, regs, strict=False):
        cpu.registers = dict(r)
        cpu.pid_in_note = pid
