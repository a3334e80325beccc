"""The guest kernel's own account of itself, recorded just before the crash: the lab's oracle.

The guest's init reads /proc (every task's stat, comm, stack and status, its threads' too, and
slabinfo, meminfo, modules, mounts, interrupts, ...) with one busybox `head`, and sends that as
base64 gzip on the second serial port between two marker lines. `unpack_serial` turns it into a
directory tree next to the dumps (tasks/PID/stat, tasks/PID/task/TID/stack, meminfo, ...);
`load_truth` reads the tree.

Tasks the truth lists are those alive a moment before the trigger: the dump also has the
trigger's own process, and transient ones (the collector's `cat`s) are in neither.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

BEGIN, END = "PMDBLAB-TRUTH-BEGIN", "PMDBLAB-TRUTH-END"
PF_KTHREAD = 0x00200000
HEAD_MARK = re.compile(r"(?:^|\n)==> (.+?) <==\n")
STACK_LINE = re.compile(r"^\[<[0-9a-fx]+>\]\s+([^\s+]+)")


class TruthError(Exception):
    """The truth is missing or damaged."""


@dataclass
class Task:
    """One task (a process's leader or one of its threads) as /proc showed it."""

    pid: int    # the thread group (process) id
    tid: int    # this task's id (== pid for the leader)
    ppid: int
    state: str  # one letter: R S D T t X Z I
    comm: str
    flags: int
    stack: list[str]  # function names, innermost first, from /proc/PID/stack
    threads: list[Task] = field(default_factory=list)  # the leader's other threads
    switches: int | None = None   # voluntary + nonvoluntary context switches (/proc/PID/status)

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)


@dataclass(frozen=True)
class MapsLine:
    """One line of /proc/PID/maps: [start, end), permissions, offset, inode and path."""

    start: int
    end: int
    perms: str      # "r-xp"
    offset: int
    inode: int
    path: str       # a file, [heap], [stack], [vdso]...; "" for an anonymous mapping


@dataclass(frozen=True)
class SlabCache:
    name: str
    objsize: int
    active_objs: int
    num_objs: int
    objperslab: int
    pagesperslab: int


@dataclass(frozen=True)
class Module:
    name: str
    size: int
    refcount: int
    state: str
    address: int


@dataclass
class Truth:
    """Everything the guest recorded; `tasks` by pid (leaders), threads inside each."""

    tasks: dict[int, Task]
    slabs: dict[str, SlabCache]
    modules: dict[str, Module]
    meminfo: dict[str, int]  # kB (or a count for the HugePages_* lines)
    uname: str
    cmdline: str
    scenario: str
    mounts: list[tuple[str, str, str]]  # (device, mount point, fs type)
    module_addresses: dict[str, int]  # what pmdblab printed at load: anchor, heap, ...
    kallsyms: dict[str, int]  # a few symbols' run-time (KASLR-shifted) addresses

    @property
    def release(self) -> str:
        return self.uname.split()[2]

    def all_tasks(self) -> list[Task]:
        """Every task, threads included."""
        return [t for lead in self.tasks.values() for t in (lead, *lead.threads)]


def split_head(text: str) -> dict[str, str]:
    """busybox `head FILE...` output -> {path: content}; it writes "==> PATH <==" before each
    file and a blank line between files."""
    parts = HEAD_MARK.split(text)  # the pattern takes the blank line's newline with it
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def tree_path(guest_path: str) -> str | None:
    """Where a guest file goes in the truth dir: tasks/PID/..., tasks/PID/task/TID/..., NAME."""
    p = guest_path.split("/")
    if p[1] == "proc" and p[2].isdigit():
        if len(p) == 6 and p[3] == "task":
            return None if p[4] == p[2] else f"tasks/{p[2]}/task/{p[4]}/{p[5]}"
        return f"tasks/{p[2]}/{p[3]}" if len(p) == 4 else None
    return p[-1]


def unpack_serial(serial_text: str, dest: Path) -> Path:
    """Decode the truth sent on the serial port into dest/truth; returns that dir."""
    start, stop = serial_text.find(BEGIN), serial_text.find(END)
    if start < 0 or stop < start:
        raise TruthError("the guest sent no complete truth (markers missing)")
    body = "".join(serial_text[start + len(BEGIN):stop].split())
    try:
        text = gzip.decompress(base64.b64decode(body, validate=True)).decode("utf-8", "replace")
    except (binascii.Error, OSError, EOFError) as e:
        raise TruthError(f"the truth did not decode: {e}") from e
    root = dest / "truth"
    for guest_path, content in split_head(text).items():
        rel = tree_path(guest_path)
        if rel is not None:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(content)
    if not (root / "tasks").is_dir():
        raise TruthError("the truth lists no tasks")
    return root


def parse_stat(text: str) -> tuple[int, str, str, int, int]:
    """(pid, comm, state, ppid, flags) from /proc/PID/stat; comm may hold spaces and ')'."""
    head, _, rest = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    fields = rest.split()
    return int(pid_text), comm, fields[0], int(fields[1]), int(fields[6])


def parse_stack(text: str) -> list[str]:
    """Function names from /proc/PID/stack lines like '[<0>] do_select+0x5a0/0x7a0'; none
    when a frame's offset is its function's size (``+0x94/0x94``): the record caught the
    task while it was being switched, and the one frame it got is not where it sleeps."""
    names = []
    for line in text.splitlines():
        m = STACK_LINE.match(line)
        if m is None:
            continue
        at = _OFFSET.search(line)
        if at is not None and at.group(1) == at.group(2):
            return []
        names.append(m.group(1))
    return names


_OFFSET = re.compile(r"\+(0x[0-9a-f]+)/(0x[0-9a-f]+)")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _task(d: Path, pid: int) -> Task | None:
    stat = _read(d / "stat")
    if not stat.strip():
        return None  # it exited while the guest was recording
    tid, comm, state, ppid, flags = parse_stat(stat)
    return Task(pid, tid, ppid, state, comm, flags, parse_stack(_read(d / "stack")),
                switches=parse_switches(_read(d / "status")))


def parse_switches(status: str) -> int | None:
    """voluntary_ctxt_switches + nonvoluntary_ctxt_switches of a /proc/PID/status."""
    found = [int(m.group(1)) for m in re.finditer(r"^(?:non)?voluntary_ctxt_switches:\s+(\d+)", status, re.M)]
    return sum(found) if len(found) == 2 else None


def load_tasks(root: Path) -> dict[int, Task]:
    tasks = {}
    for d in sorted((root / "tasks").iterdir(), key=lambda p: int(p.name)):
        pid = int(d.name)
        lead = _task(d, pid)
        if lead is None:
            continue
        for t in sorted((d / "task").glob("[0-9]*"), key=lambda p: int(p.name)):
            if int(t.name) != pid and (thread := _task(t, pid)) is not None:
                lead.threads.append(thread)
        tasks[pid] = lead
    return tasks


def parse_slabinfo(text: str) -> dict[str, SlabCache]:
    """/proc/slabinfo (version 2.1): name, active, num, objsize, objperslab, pagesperslab."""
    out = {}
    for line in text.splitlines():
        if line.startswith(("slabinfo", "#")) or not line.strip():
            continue
        f = line.split()
        out[f[0]] = SlabCache(f[0], int(f[3]), int(f[1]), int(f[2]), int(f[4]), int(f[5]))
    return out


def parse_modules(text: str) -> dict[str, Module]:
    """/proc/modules: 'name size refcount deps state address [taint]'."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 6:
            out[f[0]] = Module(f[0], int(f[1]), int(f[2]), f[4], int(f[5], 16))
    return out


def parse_maps(text: str) -> list[MapsLine]:
    """/proc/PID/maps: 'start-end perms offset dev inode [path]'."""
    out = []
    for line in text.splitlines():
        f = line.split(maxsplit=5)
        if len(f) >= 5 and "-" in f[0]:
            start, _, end = f[0].partition("-")
            out.append(MapsLine(int(start, 16), int(end, 16), f[1], int(f[2], 16), int(f[4]),
                                f[5].strip() if len(f) > 5 else ""))
    return out


def load_maps(directory: Path | str) -> dict[int, list[MapsLine]] | None:
    """Each process's /proc/PID/maps by pid (kernel threads: empty), or None for a truth
    recorded before the guest's init sent maps (lab sets of truth_version 1)."""
    root = Path(directory)
    if (root / "truth").is_dir():
        root = root / "truth"
    files = {int(d.name): d / "maps" for d in (root / "tasks").iterdir() if d.name.isdigit()}
    if not any(p.exists() for p in files.values()):
        return None
    return {pid: parse_maps(_read(p)) for pid, p in files.items() if p.exists()}


def parse_meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.split():
            out[key.strip()] = int(value.split()[0])
    return out


def parse_addresses(text: str) -> dict[str, int]:
    """pmdblab's 'pmdblab: address NAME 0x...' lines (dmesg may prefix a timestamp)."""
    return {m.group(1): int(m.group(2), 16)
            for m in re.finditer(r"pmdblab: address (\w+) ([0-9a-f]+)", text)}


def parse_kallsyms(text: str) -> dict[str, int]:
    return {f[2]: int(f[0], 16) for line in text.splitlines() if len(f := line.split()) >= 3}


def load_truth(directory: Path | str) -> Truth:
    """The truth in a directory made by the lab (the dir itself, or one holding 'truth/')."""
    root = Path(directory)
    if (root / "truth").is_dir():
        root = root / "truth"
    if not (root / "tasks").is_dir():
        raise TruthError(f"{root} holds no truth (no tasks/ dir)")
    return Truth(
        tasks=load_tasks(root),
        slabs=parse_slabinfo(_read(root / "slabinfo")),
        modules=parse_modules(_read(root / "modules")),
        meminfo=parse_meminfo(_read(root / "meminfo")),
        uname=_read(root / "uname").strip(),
        cmdline=_read(root / "cmdline").strip(),
        scenario=_read(root / "scenario").strip(),
        mounts=[(f[0], f[1], f[2]) for line in _read(root / "mounts").splitlines()
                if len(f := line.split()) >= 3],
        module_addresses=parse_addresses(_read(root / "module")),
        kallsyms=parse_kallsyms(_read(root / "kallsyms")),
    )
