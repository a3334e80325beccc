"""A process's address space on a Linux dump: crash's ``vm``, mdb's ``::walk vma`` and ``::pmap``.

The VMAs come from pmdb.os.linux.mm.vma (the maple tree since 6.1, the vm_next list
before); file names from the kernel's d_path across mounts (pmdb.os.linux.fs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pmdb.commands import Context, dcmd, walker
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError
from pmdb.os.linux.fs import Fs
from pmdb.os.linux.kernel import LinuxKernel
from pmdb.os.linux.mm.vma import Vma, read_vma, vma_addresses, vma_file_name
from pmdb.os.linux.tasks.tasks import Task
from pmdb.output import Column, Hex

from .crash_layout import mkstring, widths
from .linux_files import crash_tasks
from .linux_proc import task_header

VM_USAGE = "[pid | task ...]"
PID_LIMIT = 1 << 22         # PID_MAX_LIMIT: a number below it is a pid, above it an address


def _current(ctx: Context, command: str) -> Task:
    current = ctx.target.current_thread
    if current is None or current.address is None:
        raise CommandError(f"no current task (name one: 0tPID{command})")
    return ctx.kernel.task(current.address)


def _vmas(ctx: Context, mm: int) -> Iterator[Vma]:
    kernel = ctx.kernel
    for addr in vma_addresses(kernel.mem, kernel.types, kernel.offsets, mm):
        yield read_vma(kernel.mem, kernel.offsets, addr)


# -- crash's vm ---------------------------------------------------------------------------

def _vm_lines(ctx: Context, task: Task) -> Iterator[str]:
    """crash's vm_area_dump: the task header, MM PGD RSS TOTAL_VM, then a row per VMA."""
    kernel = ctx.kernel
    w = widths(kernel.mem.ptr_size)
    kb = kernel.page_size() // 1024
    pgd = kernel.mem.ptr(task.mm + kernel.offsets.offsetof("mm_struct", "pgd")) if task.mm else 0
    yield task_header(task)
    yield (f"{mkstring('MM', w.vaddr, 'center')}  {mkstring('PGD', w.vaddr, 'center')}  "
           f"{mkstring('RSS', 6, 'center')}  {mkstring('TOTAL_VM', 8, 'center')}")
    yield (f"{mkstring(f'{task.mm:x}', w.vaddr, 'center')}  {mkstring(f'{pgd:x}', w.vaddr, 'center')}  "
           f"{mkstring(f'{task.rss * kb}k', 6, 'center')}  {mkstring(f'{task.total_vm * kb}k', 8, 'center')}")
    if not task.mm:
        return
    yield vma_header(kernel.mem.ptr_size)
    fs = Fs(kernel.mem, kernel.types)
    for vma in _vmas(ctx, task.mm):
        yield vma_line(kernel.mem.ptr_size, vma, fs)


def vma_header(ptr_size: int) -> str:
    """crash's VMA START END FLAGS FILE heading (vm, vtop)."""
    w = widths(ptr_size)
    s = w.minspace
    return (f"{mkstring('VMA', w.vaddr, 'center')}{s}{mkstring('START', w.uvaddr, 'center-right')}{s}"
            f"{mkstring('END', w.uvaddr, 'center-right')}  FLAGS{s}FILE")


def vma_line(ptr_size: int, vma: Vma, fs: Fs) -> str:
    """One VMA under vma_header: its vm_area_struct, start, end, vm_flags and file."""
    w = widths(ptr_size)
    s = w.minspace
    return (f"{mkstring(f'{vma.address:x}', w.vaddr, 'center')}{s}{vma.start:>{w.uvaddr}x}{s}"
            f"{vma.end:>{w.uvaddr}x} {vma.flags:6x}{s}{vma_file_name(fs, vma)}")


@dcmd("vm", addr="optional", synopsis="crash's vm: a task's mm and its VMAs (start, end, flags, file)",
      example="vm 1", usage=VM_USAGE)
def vm(ctx: Context, *args: Any) -> None:
    """``vm [PID | TASK ...]`` (the current task when none is named), in crash 8's layout:
    the task's header, its mm_struct, page directory, RSS and total VM, then one row per
    VMA: its vm_area_struct, start, end, vm_flags and the path of the file it maps. A kernel
    thread has no mm (zeros, no VMAs). VMAs come from mm_mt (6.1+) or the mmap list."""
    positional, _ = parse_options("vm", {}, args, VM_USAGE)
    for n, task in enumerate(crash_tasks(ctx, positional, "vm")):
        lines = ([""] if n else []) + list(_vm_lines(ctx, task))
        ctx.out.record({"task": Hex(task.address), "pid": task.pid, "mm": Hex(task.mm)}, text=lines)


# -- mdb's ::walk vma and ::pmap ------------------------------------------------------------

def mm_of(kernel: LinuxKernel, ident: int) -> int:
    """The mm_struct named by a task_struct address, a pid, or an mm_struct address itself."""
    if ident < PID_LIMIT or any(t.address == ident for t in kernel.tasks()):
        task = kernel.find_task(ident)
        if not task.mm:
            raise CommandError(f"task {task.address:x} ({task.comm}) is a kernel thread: it has no VMAs")
        return task.mm
    return ident


@walker("vma", synopsis="a process's VMAs (start: a task, a pid or an mm_struct)",
        type_name="struct vm_area_struct", example="0t1::walk vma | ::print vm_start vm_end")
def walk_vma(ctx: Context, start: int | None) -> Iterator[int]:
    """Each vm_area_struct of a process in address order: the mm of a task (its address or
    pid) or an mm_struct's address; without a start, the current task's."""
    kernel = ctx.kernel
    mm = mm_of(kernel, start) if start is not None else mm_of(kernel, _current(ctx, "::walk vma").address)
    yield from vma_addresses(kernel.mem, kernel.types, kernel.offsets, mm)


PMAP_COLUMNS = (Column("vma", "SEG"), Column("start", "BASE", ">"), Column("size", "SIZE", ">"),
                Column("perms", "PERM"), Column("path", "PATH"))
_VM_READ, _VM_WRITE, _VM_EXEC, _VM_SHARED = 0x1, 0x2, 0x4, 0x8


def perms(flags: int) -> str:
    """vm_flags as /proc/PID/maps spells them: rwx and p (private) or s (shared)."""
    return "".join(c if flags & bit else "-" for c, bit in (("r", _VM_READ), ("w", _VM_WRITE), ("x", _VM_EXEC))) \
        + ("s" if flags & _VM_SHARED else "p")


@dcmd("pmap", addr="optional", synopsis="a process's mappings: each VMA's base, size, permissions and file",
      example="0t1::pmap")
def pmap(ctx: Context, *args: Any) -> None:
    """illumos mdb's ::pmap for a Linux process (addr: a task, a pid or an mm_struct; without
    one, the current task): one row per VMA with its vm_area_struct, base, size in kilobytes,
    permissions as /proc/PID/maps shows them and the file it maps. Piped, hands on the VMAs."""
    if args:
        raise CommandError("pmap takes no arguments: the process goes before it (0t1::pmap)")
    kernel = ctx.kernel
    mm = mm_of(kernel, ctx.addr) if ctx.addr is not None else mm_of(kernel, _current(ctx, "::pmap").address)
    rows, fs = [], Fs(kernel.mem, kernel.types)
    for vma in _vmas(ctx, mm):
        if ctx.piped:
            ctx.emit(vma.address, kernel.types.find("struct vm_area_struct"))
            continue
        rows.append([Hex(vma.address), Hex(vma.start, 16), f"{(vma.end - vma.start) // 1024}k",
                     perms(vma.flags), vma_file_name(fs, vma)])
    if not ctx.piped:
        ctx.out.table(PMAP_COLUMNS, rows)
