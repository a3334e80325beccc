"""The facts crash's ``sys`` prints, read from the kernel's own variables.

BTF describes types but not variables, so each global read here is named
with the type the kernel declares it with (``tk_core`` is an anonymous
struct whose second member is ``struct timekeeper``; ``avenrun`` is
``unsigned long[3]``). Values are formatted as crash formats them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pmdb.errors import CorruptionError, FaultError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.printk.panicmsg import panic_message
from pmdb.symbols.kmodules import StructOffsets
from pmdb.types.registry import TypeRegistry

_UTS_LEN = 65            # __NEW_UTS_LEN + 1

Lookup = Callable[[str], "int | None"]

FSHIFT = 11                   # avenrun's fixed point (include/linux/sched/loadavg.h)
FIXED_1 = 1 << FSHIFT
_GB = 1 << 30
_MB = 1 << 20


@dataclass
class KernelVars:
    """What the readers here need: kernel memory, symbol addresses and struct layouts."""

    mem: AddressSpace
    lookup: Lookup
    offsets: StructOffsets
    types: TypeRegistry
    node_slots: int = 64          # MAX_NUMNODES: node_data's length

    def need(self, name: str) -> int:
        addr = self.lookup(name)
        if addr is None:
            raise SymbolError(f"no symbol {name} in kallsyms")
        return addr


def utsname(kv: KernelVars) -> dict[str, str]:
    """init_uts_ns.name: sysname, nodename, release, version, machine, domainname."""
    base = kv.need("init_uts_ns") + kv.offsets.offsetof("uts_namespace", "name")
    out = {}
    for field in ("sysname", "nodename", "release", "version", "machine", "domainname"):
        raw = kv.mem.read(base + kv.offsets.offsetof("new_utsname", field), 65)
        out[field] = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return out


def utsname_untyped(mem: AddressSpace, init_uts_ns: int | None, release: str) -> dict[str, str]:
    """init_uts_ns.name without types: six char[65] (struct new_utsname, a fixed ABI) found
    by the release VMCOREINFO names (a kref may precede it, as before 5.11); {} if absent."""
    if init_uts_ns is None or not release:
        return {}
    try:
        head = mem.read(init_uts_ns, 256)
    except PmdbError:
        return {}
    at = head.find(release.encode() + b"\0")
    if at < 2 * _UTS_LEN:
        return {}
    base = init_uts_ns + at - 2 * _UTS_LEN
    try:
        raw = mem.read(base, 6 * _UTS_LEN)
    except PmdbError:
        return {}
    names = ("sysname", "nodename", "release", "version", "machine", "domainname")
    return {n: raw[i * _UTS_LEN:(i + 1) * _UTS_LEN].split(b"\0", 1)[0].decode("utf-8", "replace")
            for i, n in enumerate(names)}


def timekeeper(kv: KernelVars) -> int:
    """The address of the core ``struct timekeeper``."""
    # Linux 6.14 put it in struct tk_data, and 6.17 made that an array (timekeeper_data[],
    # the core first, then the auxiliary clocks)
    data = kv.lookup("timekeeper_data")
    if data is not None and kv.types.find("struct tk_data") is not None:
        return data + kv.offsets.offsetof("tk_data", "timekeeper")
    # 3.17 .. 6.13: static struct { seqcount_raw_spinlock_t seq; struct timekeeper timekeeper; } tk_core
    seq_t = kv.types.find("seqcount_raw_spinlock_t") or kv.types.find("seqcount_t")
    seq_size = seq_t.sizeof() if seq_t is not None else 4
    return kv.need("tk_core") + (seq_size + 7) // 8 * 8


def wall_time(kv: KernelVars) -> int:
    """Seconds since the epoch at the crash: the timekeeper's xtime_sec."""
    return kv.mem.u64(timekeeper(kv) + kv.offsets.offsetof("timekeeper", "xtime_sec"))


def monotonic_ns(kv: KernelVars) -> int:
    """Nanoseconds since boot at the timekeeper's last update (tkr_mono.base, one tick old at most)."""
    tkr = timekeeper(kv) + kv.offsets.offsetof("timekeeper", "tkr_mono")
    return kv.mem.u64(tkr + kv.offsets.offsetof("tk_read_base", "base"))


HZ_CHOICES = (100, 250, 300, 1000)      # the CONFIG_HZ values Kconfig offers


MAX_HZ = 100_000              # far above any CONFIG_HZ (100..1000): a larger value is damage


def hz(kv: KernelVars) -> int:
    """CONFIG_HZ, from tick_nsec (the length of one tick in ns); CorruptionError when
    tick_nsec is damaged (a tick over 2 s, or one so short HZ would exceed MAX_HZ). Where
    that variable is gone (Linux 7.x), the HZ whose jiffies count agrees with the
    monotonic clock."""
    addr = kv.lookup("tick_nsec")
    tick = kv.mem.u64(addr) if addr is not None else 0
    if tick:
        rate = round(1e9 / tick)
        if not 1 <= rate <= MAX_HZ:
            raise CorruptionError(addr or 0, f"tick_nsec {tick} is not a plausible tick length")
        return rate
    try:
        booted = monotonic_ns(kv) / 1e9
        jiffies = kv.mem.u64(kv.need("jiffies_64"))
    except PmdbError:
        return 1000
    return min(HZ_CHOICES, key=lambda h: abs(_since_boot(jiffies, h) - booted))


def _since_boot(jiffies: int, hz: int) -> float:
    """Seconds the jiffies count says have passed (jiffies start at -5 minutes)."""
    initial = (-300 * hz) & 0xFFFFFFFF          # INITIAL_JIFFIES
    return ((jiffies - initial) & (1 << 64) - 1) / hz


def uptime(kv: KernelVars) -> int:
    """Seconds since boot, from jiffies_64 as crash counts it (jiffies start at -5 minutes)."""
    return int(_since_boot(kv.mem.u64(kv.need("jiffies_64")), hz(kv)))


def load_average(kv: KernelVars) -> tuple[str, str, str]:
    """avenrun[3] as /proc/loadavg shows it (rounded to 1/100)."""
    base = kv.need("avenrun")
    out = []
    for i in range(3):
        v = kv.mem.ptr(base + kv.mem.ptr_size * i) + FIXED_1 // 200     # unsigned longs
        out.append(f"{v >> FSHIFT}.{((v & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}")
    return out[0], out[1], out[2]


def pgdats(kv: KernelVars) -> list[int]:
    """Every node's struct pglist_data: node_data[] (NUMA), else contig_page_data."""
    nodes = kv.lookup("node_data")
    if nodes is None:
        return [kv.need("contig_page_data")]     # !CONFIG_NUMA: one static node
    n, w = kv.node_slots, kv.mem.ptr_size
    raw = kv.mem.read(nodes, w * n)
    return [p for i in range(n) if (p := int.from_bytes(raw[w * i:w * i + w], "little"))]


def present_pages(kv: KernelVars) -> int:
    """Pages of RAM the kernel manages: node_present_pages over every node (crash's total)."""
    per_node = kv.offsets.offsetof("pglist_data", "node_present_pages")
    # an unsigned long, like the node pointers
    return sum(kv.mem.ptr(pgdat + per_node) for pgdat in pgdats(kv))


def cpu_mhz(kv: KernelVars) -> int | None:
    """The CPU clock crash shows with MACHINE: cpu_khz, else tsc_khz."""
    for name in ("cpu_khz", "tsc_khz"):
        addr = kv.lookup(name)
        if addr is not None:
            try:
                khz = kv.mem.u32(addr)
            except FaultError:
                continue
            if khz:
                return khz // 1000
    return None


def tainted(kv: KernelVars) -> bool:
    return bool(taint_mask(kv))


# include/linux/panic.h's TAINT_* bits, in order: bit i prints as letter i
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTNJ"
TAINT_OOT_MODULE = 12          # 'O': an out-of-tree module was loaded


def taint_mask(kv: KernelVars) -> int | None:
    """tainted_mask (an unsigned long), None when the dump does not hold it."""
    addr = kv.lookup("tainted_mask")
    try:
        return kv.mem.ptr(addr) if addr is not None else None
    except FaultError:
        return None


def taint_letters(mask: int) -> str:
    """The letters of the set taint bits (``DOE``), as the kernel's Tainted: line shows them
    without its blanks; bits past the table print as ``?``."""
    return "".join(TAINT_LETTERS[i] if i < len(TAINT_LETTERS) else "?"
                   for i in range(mask.bit_length()) if mask >> i & 1)


def module_taints(kv: KernelVars, module: int) -> int | None:
    """``struct module.taints`` of the module at ``module`` (None when unreadable)."""
    try:
        return kv.mem.ptr(module + kv.offsets.offsetof("module", "taints"))
    except PmdbError:
        return None


def panic_cpu(kv: KernelVars) -> int | None:
    """The CPU that called panic() (atomic_t panic_cpu, -1 when none did)."""
    addr = kv.lookup("panic_cpu")
    if addr is None:
        return None
    try:
        cpu = kv.mem.read_int(addr, 4, signed=True)
    except FaultError:
        return None
    return cpu if cpu >= 0 else None


# -- crash's formats ---------------------------------------------------------------------

def format_date(seconds: int) -> str:
    """crash's ``%a %b %e %T %Z %Y``; pmdb shows UTC, the dump's own clock. A wall time
    the C library cannot convert (damaged memory) is shown as a number, not an OverflowError."""
    try:
        return time.strftime("%a %b %e %H:%M:%S UTC %Y", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return f"(not a date: {seconds:#x} seconds)"


def format_uptime(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hms = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days} days, {hms}" if days else hms


def format_memory(pages: int, page_size: int = 4096, *, round_gb: bool = True) -> str:
    """crash's size: one decimal, '.0' dropped; sys's MEMORY also counts within 64 MB below
    a whole GB as that GB (``round_gb``; kmem -i's pages_to_size does not)."""
    total = pages * page_size
    next_gb = -(-total // _GB) * _GB
    if round_gb and total and next_gb - total <= 64 * _MB:
        total = next_gb
    if total >= _GB:
        text = f"{total / _GB:.1f} GB"
    elif total >= _MB:
        text = f"{total / _MB:.1f} MB"
    else:
        text = f"{total // 1024} KB"
    return text.replace(".0 ", " ")


def safely(read: Callable[[], str]) -> str:
    """One unreadable variable costs one field, not the whole ::status."""
    try:
        return read()
    except PmdbError as err:
        return f"(unknown: {err})"


# -- the rows of ::status ------------------------------------------------------------------

def kernel_status(kernel: Any) -> list[tuple[str, str]]:
    """crash's ``sys`` fields in crash's order, then the panic task as crash's banner shows it.
    ``kernel`` is a LinuxKernel (duck-typed to keep this module below it)."""
    kv: KernelVars = kernel.vars()
    uts = kernel_utsname(kernel, kv)
    mark = "  [TAINTED]" if tainted(kv) else ""
    used = kernel.km.vmlinux or "(none; kallsyms and BTF from the dump)"
    rows = [("KERNEL", f"{used}{mark}"),
            ("DUMPFILE", kernel.describe_file()),
            ("CPUS", safely(lambda: _cpus_text(kernel.cpus()))),
            ("DATE", safely(lambda: format_date(wall_time(kv)))),
            ("UPTIME", safely(lambda: format_uptime(uptime(kv)))),
            ("LOAD AVERAGE", safely(lambda: ", ".join(load_average(kv)))),
            ("TASKS", safely(lambda: str(kernel.task_count()))),
            ("NODENAME", uts.get("nodename", "(unknown)")),
            ("RELEASE", uts.get("release", "(unknown)")),
            ("VERSION", uts.get("version", "(unknown)")),
            ("MACHINE", _machine(kv, uts)),
            ("MEMORY", safely(lambda: format_memory(present_pages(kv)))),
            ("PANIC", safely(lambda: _panic_text(kernel)))]
    return rows + _panic_task_rows(kernel)


def kernel_utsname(kernel: Any, kv: KernelVars) -> dict[str, str]:
    """init_uts_ns.name by its type; without BTF the release VMCOREINFO names and the
    untyped layout (``kernel`` is a LinuxKernel, duck-typed as in kernel_status)."""
    try:
        return utsname(kv)
    except PmdbError:
        release = kernel.km.info.raw.get("OSRELEASE")
        uts = {"release": release} if release else {}
        uts.update(utsname_untyped(kv.mem, kernel.km.info.symbols.get("init_uts_ns"), release or ""))
        return uts


def _cpus_text(cpus: list[Any]) -> str:
    offline = sum(1 for c in cpus if not c.online)
    return f"{len(cpus)}" + (f" [OFFLINE: {offline}]" if offline else "")


def _machine(kv: KernelVars, uts: dict[str, str]) -> str:
    machine = uts.get("machine", "(unknown)")
    mhz = cpu_mhz(kv)
    return f"{machine}  ({mhz} Mhz)" if mhz else machine


def _panic_text(kernel: Any) -> str:
    msg = panic_message(kernel.log())
    return f'"{msg}"' if msg else "(no panic message in the log)"


def _panic_task_rows(kernel: Any) -> list[tuple[str, str]]:
    try:
        task = kernel.panic_task()
    except PmdbError:
        return []
    if task is None:
        return []
    return [("PID", str(task.pid)), ("COMMAND", f'"{task.comm}"'), ("TASK", f"{task.address:x}"),
            ("CPU", str(task.cpu)), ("STATE", f"{_STATE_NAMES.get(task.state, task.state)} (PANIC)")]


_STATE_NAMES = {"RU": "TASK_RUNNING", "IN": "TASK_INTERRUPTIBLE", "UN": "TASK_UNINTERRUPTIBLE",
                "ID": "TASK_IDLE", "ZO": "EXIT_ZOMBIE", "DE": "TASK_DEAD", "ST": "TASK_STOPPED",
                "TR": "TASK_TRACED", "PA": "TASK_PARKED", "WA": "TASK_WAKING", "NE": "TASK_NEW"}
