"""Data symbols an arm64 kernel's kallsyms leaves out, found in the dump itself.

Debian's arm64 kernels are built without CONFIG_KALLSYMS_ALL: kallsyms names
functions only, so nothing names the BTF, ``init_task`` or ``__per_cpu_offset``.
They are recovered here, each checked before it is believed:

* the BTF section: its header (magic 0xeb9f, version 1) scanned for in the
  image between ``_etext`` and ``__init_begin``, with the section's lengths
  adding up;
* a global: the ADRP+ADD/LDR address pairs in functions that use it (ARMv8
  code builds a global's address from a 4 KB page and its offset), each
  candidate kept only when the memory there is what BTF says it must be
  (``init_task``: a task_struct named swapper with pid 0 whose task list
  points back at it; ``__per_cpu_offset``: an array whose CPU 0 entry puts
  the per-CPU ``runqueues`` on a run queue of CPU 0 whose idle task is
  init_task).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from pmdb.errors import PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.kmodules import RegistryOffsets
from pmdb.symbols.table import Symbol
from pmdb.types.btf import BtfTypes
from pmdb.types.registry import TypeRegistry

Lookup = Callable[[str], "int | None"]
BTF_MAGIC = b"\x9f\xeb\x01\x00"
_CHUNK = 1 << 20
_MASK64 = (1 << 64) - 1
# functions of 5.x-6.x that use each global (for_each_process, per_cpu(), ...)
INIT_TASK_USERS = ("show_state_filter", "check_hung_uninterruptible_tasks", "__arm64_sys_getppid",
                   "sched_show_task", "find_lock_task_mm", "do_sysrq", "copy_process", "kernel_clone")
PER_CPU_OFFSET_USERS = ("nr_iowait_cpu", "idle_cpu", "available_idle_cpu", "cpu_rq_of", "sched_cpu_dying",
                        "wake_up_if_idle", "kick_process", "resched_cpu", "task_curr")
NR_CPU_IDS_USERS = ("nr_iowait", "cpumask_local_spread", "cpumask_any_but", "housekeeping_any_cpu",
                    "cpumask_next_wrap", "nr_context_switches", "nr_running", "show_interrupts",
                    "show_stat", "c_start", "get_nohz_timer_target")
NODE_DATA_USERS = ("first_online_pgdat", "next_online_pgdat", "next_zone", "si_meminfo_node",
                   "nr_free_zone_pages", "build_all_zonelists", "show_free_areas", "__show_free_areas")
LIST_USERS = {"modules": ("find_module_all", "m_start", "print_modules", "__module_address", "modules_open"),
              "slab_caches": ("slab_start", "slab_next", "find_mergeable", "kmem_cache_shrink_all",
                              "cache_random_seq_create", "dump_unreclaimable_slab")}
MAX_PFN_USERS = ("page_is_ram", "pfn_valid", "memblock_is_map_memory", "read_kcore", "kpagecount_read",
                 "kpageflags_read", "kpagecgroup_read", "pfn_is_map_memory", "page_idle_bitmap_read")
RUNQUEUES_USERS = ("scheduler_tick", "nr_iowait_cpu", "idle_cpu", "resched_cpu", "wake_up_if_idle")


def find_btf(space: AddressSpace, lo: int, hi: int) -> tuple[int, int] | None:
    """(start, stop) of the BTF section in [lo, hi), by its header."""
    addr = lo & ~3
    while addr < hi:
        n = min(_CHUNK, hi - addr)
        try:
            data = space.read(addr, n + 24)
        except PmdbError:
            addr += n
            continue
        at = data.find(BTF_MAGIC)
        while 0 <= at < n:
            if at % 4 == 0:
                found = _btf_at(data, at, addr)
                if found is not None:
                    return found
            at = data.find(BTF_MAGIC, at + 1)
        addr += n
    return None


def _btf_at(data: bytes, at: int, base: int) -> tuple[int, int] | None:
    if len(data) < at + 24:
        return None
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", data, at + 4)
    if hdr_len != 24 or type_off != 0 or str_off != type_len or type_len < 1 << 16 or str_len < 1 << 12:
        return None
    start = base + at
    return start, start + hdr_len + str_off + str_len


def adrp_targets(space: AddressSpace, func: int, size: int) -> Iterator[int]:
    """Addresses built by ADRP followed (anywhere later in the function) by ADD or LDR
    with the same base register: what the function takes the address of or loads from."""
    size = min(size or 0x400, 0x2000)
    try:
        code = space.read(func, size)
    except PmdbError:
        return
    known: dict[int, int] = {}             # registers holding an address built here
    for i in range(0, len(code) - 3, 4):
        (insn,) = struct.unpack_from("<I", code, i)
        pc = func + i
        rd, rn = insn & 0x1F, insn >> 5 & 0x1F
        if insn & 0x9F000000 == 0x90000000:                     # ADRP Xd, label
            imm = (insn >> 29 & 3) | (insn >> 5 & 0x7FFFF) << 2
            if imm >> 20:
                imm -= 1 << 21
            known[rd] = ((pc & ~0xFFF) + (imm << 12)) & _MASK64
        elif insn & 0xFFC00000 == 0x91000000:                   # ADD Xd, Xn, #imm12
            if rn in known:
                known[rd] = known[rn] + (insn >> 10 & 0xFFF)
                yield known[rd]
            else:
                known.pop(rd, None)
        elif insn & 0xBFC00000 == 0xB9400000:                   # LDR Xt/Wt, [Xn, #imm12 scaled]
            if rn in known:
                yield known[rn] + (insn >> 10 & 0xFFF) * (8 if insn >> 30 & 1 else 4)
            known.pop(rd, None)
        elif insn & 0xFFE0FFE0 == 0xAA0003E0:                   # MOV Xd, Xm
            rm = insn >> 16 & 0x1F
            if rm in known:
                known[rd] = known[rm]
            else:
                known.pop(rd, None)


class Recovery:
    """Finds and checks the globals; ``symbols()`` lists what was found."""

    def __init__(self, space: AddressSpace, lookup: Lookup, sym_size: Callable[[str], int]) -> None:
        self.space, self.lookup, self.sym_size = space, lookup, sym_size
        self.found: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self.offsets: RegistryOffsets | None = None
        self.btf: BtfTypes | None = None

    def candidates(self, users: tuple[str, ...]) -> Iterator[int]:
        seen: set[int] = set()
        for name in users:
            addr = self.lookup(name)
            if addr is None:
                continue
            for target in adrp_targets(self.space, addr, self.sym_size(name)):
                if target not in seen:
                    seen.add(target)
                    yield target

    def run(self) -> list[Symbol]:
        etext, init = self.lookup("_etext"), self.lookup("__init_begin")
        if etext is None or init is None or not 0 < init - etext < 1 << 30:
            return []
        btf = find_btf(self.space, etext, init)
        if btf is None:
            return []
        self.found["__start_BTF"], self.found["__stop_BTF"] = btf
        try:
            self.btf = BtfTypes(self.space, offset=btf[0], size=btf[1] - btf[0], ptr_size=8)
            types = TypeRegistry(8)
            types.add_source(self.btf)
            self.offsets = RegistryOffsets(types)
            self._init_task()
            self._per_cpu()
            self._node_data()
            self._lists()
            self._max_pfn()
            self._panic_cpu()
            self._init_pid_ns()
            self._clocks()
        except PmdbError:
            pass
        return [Symbol(name, addr, size=self.sizes.get(name, 0), kind="object") for name, addr in self.found.items()]

    def _init_task(self) -> None:
        assert self.offsets is not None
        o = self.offsets
        comm, pid, tasks = (o.offsetof("task_struct", m) for m in ("comm", "pid", "tasks"))
        for cand in self.candidates(INIT_TASK_USERS):
            try:
                if not self.space.read(cand + comm, 8).startswith(b"swapper") or self.space.u32(cand + pid):
                    continue
                nxt = self.space.ptr(cand + tasks)
                if self.space.ptr(nxt + 8) != cand + tasks:
                    continue
            except PmdbError:
                continue
            self.found["init_task"] = cand
            return

    def _per_cpu(self) -> None:
        """runqueues by its per-CPU offset in BTF's .data..percpu, __per_cpu_offset by its use."""
        assert self.offsets is not None and self.btf is not None
        init_task = self.found.get("init_task")
        if init_task is None:
            return
        idle = self.offsets.offsetof("rq", "idle")
        rq_cpu = self.offsets.offsetof("rq", "cpu")
        runqueues = [c for c in self.candidates(RUNQUEUES_USERS)]
        for cand in self.candidates(PER_CPU_OFFSET_USERS):
            try:
                first = self.space.ptr(cand)
            except PmdbError:
                continue
            for rq in runqueues:
                try:
                    here = (rq + first) & _MASK64
                    if self.space.ptr(here + idle) == init_task and self.space.u32(here + rq_cpu) == 0:
                        self.found["__per_cpu_offset"] = cand
                        self.found["runqueues"] = rq
                        self._per_cpu_start(rq)
                        self._nr_cpu_ids(cand, rq, idle, rq_cpu)
                        return
                except PmdbError:
                    continue

    def _node_data(self) -> None:
        """node_data[]: pointers to pglist_data whose node_id is their index (NUMA kernels)."""
        assert self.offsets is not None
        node_id = self.offsets.offsetof("pglist_data", "node_id")
        for cand in self.candidates(NODE_DATA_USERS):
            slots = 0
            try:
                while slots < 64:
                    pgdat = self.space.ptr(cand + 8 * slots)
                    if pgdat and self.space.u32(pgdat + node_id) != slots:
                        break
                    slots += 1
                first = self.space.ptr(cand)
            except PmdbError:
                continue
            if first and slots:
                self.found["node_data"] = cand
                self.sizes["node_data"] = 8 * slots
                return

    def _lists(self) -> None:
        """List heads (``modules``, ``slab_caches``): a ring of list_heads that comes back."""
        for name, users in LIST_USERS.items():
            for cand in self.candidates(users):
                if self._is_list_head(cand):
                    self.found[name] = cand
                    break

    def _is_list_head(self, head: int) -> bool:
        node = head
        try:
            for _ in range(4096):
                nxt = self.space.ptr(node)
                if self.space.ptr(nxt + 8) != node:
                    return False
                node = nxt
                if node == head:
                    return True
        except PmdbError:
            return False
        return False

    def _max_pfn(self) -> None:
        """max_pfn: one past the last page frame, which the dump has just below."""
        for cand in self.candidates(MAX_PFN_USERS):
            try:
                pfn = self.space.u64(cand)
            except PmdbError:
                continue
            phys = getattr(self.space, "phys", None)
            if 0 < pfn < 1 << 36 and phys is not None and phys.readable((pfn << 12) - 8, 8) \
                    and not phys.readable(pfn << 12, 8):
                self.found["max_pfn"] = cand
                return

    def _panic_cpu(self) -> None:
        """panic_cpu: what both panic() and nmi_panic() compare-and-swap, -1 or a CPU."""
        known = set(self.found.values())
        nmi = set(self.candidates(("nmi_panic",))) - known
        both = [c for c in self.candidates(("panic",)) if c in nmi]
        limit = self.space.u32(self.found["nr_cpu_ids"]) if "nr_cpu_ids" in self.found else 8192
        for cand in both:
            try:
                value = self.space.read_int(cand, 4, signed=True)
            except PmdbError:
                continue
            if -1 <= value < limit:
                self.found["panic_cpu"] = cand
                return

    def _clocks(self) -> None:
        """jiffies_64 (INITIAL_JIFFIES is 300 s of ticks before 2**32), avenrun (three small
        fixed-point numbers read together) and the timekeeper (xtime_sec, an epoch time)."""
        for cand in self.candidates(("schedule_timeout", "round_jiffies", "round_jiffies_up")):
            try:
                value = self.space.u64(cand)
            except PmdbError:
                continue
            if any(((value - (1 << 32) + 300 * hz) & _MASK64) < 1 << 40 for hz in (100, 250, 300, 1000)):
                self.found["jiffies_64"] = cand
                break
        loads = list(self.candidates(("get_avenrun",)))
        for cand in loads:
            try:
                small = all(self.space.u64(cand + 8 * i) < 1 << 32 for i in range(3))
            except PmdbError:
                continue
            if small and cand + 8 in loads and cand + 16 in loads:
                self.found["avenrun"] = cand
                break
        self._timekeeper()

    def _timekeeper(self) -> None:
        assert self.offsets is not None and self.btf is not None
        xtime = self.offsets.offsetof("timekeeper", "xtime_sec")
        for cand in self.candidates(("ktime_get_real_seconds",)):
            try:
                seconds = self.space.u64(cand)
            except PmdbError:
                continue
            if not 1_000_000_000 < seconds < 1 << 34:
                continue
            tk = cand - xtime
            try:
                # 6.14+: timekeeper_data[] of struct tk_data; before: tk_core {seq; timekeeper}
                self.found["timekeeper_data"] = tk - self.offsets.offsetof("tk_data", "timekeeper")
            except SymbolError:
                self.found["tk_core"] = tk - 8
            return

    def _init_pid_ns(self) -> None:
        """init_pid_ns: the namespace of init_task's own pid (thread_pid->numbers[0].ns)."""
        assert self.offsets is not None
        task = self.found.get("init_task")
        if task is None:
            return
        o = self.offsets
        try:
            pid = self.space.ptr(task + o.offsetof("task_struct", "thread_pid"))
            ns = self.space.ptr(pid + o.offsetof("pid", "numbers") + o.offsetof("upid", "ns"))
            if self.space.u32(ns + o.offsetof("pid_namespace", "level")) == 0:
                self.found["init_pid_ns"] = ns
        except PmdbError:
            return

    def _nr_cpu_ids(self, offsets: int, runqueues: int, idle: int, rq_cpu: int) -> None:
        """nr_cpu_ids: the variable (found by its use) whose value is the count of CPUs whose
        run queue says it is theirs."""
        count = 0
        for cpu in range(8192):
            try:
                rq = (runqueues + self.space.ptr(offsets + 8 * cpu)) & _MASK64
                if self.space.u32(rq + rq_cpu) != cpu or not self.space.ptr(rq + idle):
                    break
            except PmdbError:
                break
            count = cpu + 1
        for cand in self.candidates(NR_CPU_IDS_USERS):
            try:
                if self.space.u32(cand) == count:
                    self.found["nr_cpu_ids"] = cand
                    return
            except PmdbError:
                continue

    def _per_cpu_start(self, runqueues: int) -> None:
        assert self.btf is not None
        for name, off, _size in self.btf.datasec(".data..percpu"):
            if name == "runqueues":
                start = runqueues - off
                self.found["__per_cpu_start"] = start
                for var, voff, _ in self.btf.datasec(".data..percpu"):
                    self.found.setdefault(var, start + voff)
                return


def recover_symbols(space: AddressSpace, lookup: Lookup, sym_size: Callable[[str], int]) -> list[Symbol]:
    """The data symbols found (empty when kallsyms already names them, or nothing is found)."""
    if lookup("init_task") is not None or lookup("__start_BTF") is not None:
        return []
    try:
        return Recovery(space, lookup, sym_size).run()
    except SymbolError:
        return []
