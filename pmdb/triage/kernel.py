"""A kernel dump's triage facts, read through the kernel model (sysinfo, the panic task,
its stack as ``$c`` unwinds it)."""

from __future__ import annotations

import os
from typing import Any

from pmdb.errors import PmdbError
from pmdb.os.linux import sysinfo
from pmdb.os.linux.printk.panicmsg import crash_line
from pmdb.os.linux.stacks.frames import lookup_address, unwind_kernel_task
from pmdb.target import Target
from pmdb.triage.signature import UNKNOWN, signature, signature_id
from pmdb.unwind.frame import Frame


def kernel_facts(target: Target) -> dict[str, Any]:
    """release, build-id, hostname, time, uptime, the crash line, the crashing task and
    its signature, taint and out-of-tree modules of a vmcore Target."""
    kernel: Any = target.os
    if target.symbols.lookup("panic") is None:
        # kallsyms could not be read (a truncated dump): no name to give any frame
        why = target.warnings[0] if target.warnings else "kallsyms could not be read"
        raise PmdbError(f"{os.path.basename(target.path)}: no kernel symbols: {why}")
    kv = kernel.vars()
    uts = sysinfo.kernel_utsname(kernel, kv)
    out: dict[str, Any] = {
        "release": uts.get("release") or kernel.km.info.osrelease or None,
        "build_id": kernel.km.info.build_id or None,
        "hostname": uts.get("nodename"),
        "time": _or_none(lambda: sysinfo.wall_time(kv)),
        "time_source": "dump",
        "uptime": _or_none(lambda: sysinfo.uptime(kv)),
        "crash_line": crash_line(kernel.log()),
    }
    if out["time"] is None:
        out["time_source"] = None
    mask = sysinfo.taint_mask(kv)
    out["taint"] = sysinfo.taint_letters(mask) if mask is not None else None
    out["oot_modules"] = _out_of_tree(kernel, kv)
    out.update(_crashing_task(target, kernel, kv))
    return out


def _or_none(read: Any) -> Any:
    try:
        return read()
    except PmdbError:
        return None


def _crashing_task(target: Target, kernel: Any, kv: sysinfo.KernelVars) -> dict[str, Any]:
    """pid, comm, CPU and stack of the task that panicked. Its task_struct may be lost
    (a makedumpfile that excluded its page): then the panic CPU's registers are unwound.
    Without a task list (no types) the opener's choice, the CPU whose stack runs through
    panic(), is the crashing thread."""
    try:
        task = kernel.panic_task()
    except PmdbError:
        task = None
    cpu = sysinfo.panic_cpu(kv)
    cpus = _or_none(kernel.cpus) or []
    regs = dict(cpus[cpu].registers) if cpu is not None and cpu < len(cpus) else {}
    if task is not None:
        # unwound as $c unwinds the panic task, from its CPU's registers (a task list cut
        # short by excluded pages may not reach it, so not through the thread list)
        frames = _or_none(lambda: unwind_kernel_task(kernel, task.address, regs or None)) or []
        return _with_stack(target, frames, pid=task.pid, comm=task.comm, cpu=task.cpu)
    if regs:
        frames = _or_none(lambda: kernel.unwinder.unwind_regs(regs)) or []
        return _with_stack(target, frames, pid=None, comm=None, cpu=cpu)
    thread = target.current_thread
    if thread is None:
        return _with_stack(target, [], pid=None, comm=None, cpu=cpu)
    frames = target.stack(thread)
    on_task = thread.address is not None
    return _with_stack(target, frames, pid=thread.id if on_task else None,
                       comm=thread.name if on_task else None, cpu=thread.extra.get("cpu", cpu))


def _with_stack(target: Target, frames: list[Frame], **task: Any) -> dict[str, Any]:
    named = [(_name(target, f), f.exception is not None) for f in frames
             if f.stack_name != "user" and (f.pc or f.slot is not None)]
    sig = signature(named)
    # why the unwind stopped early, when it did: such a signature may be cut short
    note = next((f.note for f in frames if f.note and f.method != "exception"), None)
    return {**task, "frames": [n for n, _ in named], "signature": sig, "stack_note": note,
            "signature_id": signature_id(sig) if sig else None, "function": sig[0] if sig else None}


def _name(target: Target, frame: Frame) -> str:
    hit = target.symbols.resolve(lookup_address(frame))
    return hit[0].name if hit is not None else UNKNOWN


def _out_of_tree(kernel: Any, kv: sysinfo.KernelVars) -> list[str]:
    """Modules whose own taints carry TAINT_OOT_MODULE (built outside the kernel tree)."""
    try:
        modules = kernel.modules()
    except PmdbError:
        return []
    out = []
    for m in modules:
        taints = sysinfo.module_taints(kv, m.address)
        if taints is not None and taints >> sysinfo.TAINT_OOT_MODULE & 1:
            out.append(m.name)
    return out
