"""``python -m bench.drgn_scale DUMP VMLINUX ADDR``: drgn's answers to the scale section's
questions, each timed, with the kernel's DWARF (Debian's dbg vmlinux).

Printed as ``name seconds count`` lines for bench/scale.py: open (the core dump and the
vmlinux's debug info), ps (for_each_task reading pid, comm, state and parent, as crash's
ps shows them), stacks (prog.stack_trace of each task, formatted), kmastat
(slab_cache_usage of every cache), whatis (slab_object_info of ADDR) and verify
(slab_cache_for_each_allocated_object over every cache: drgn has no verifier, this is its
walk of every object, for BUDGET seconds: its objects/s is compared).
"""

from __future__ import annotations

import sys
import time

BUDGET = 30.0    # seconds of drgn's object walk


def main(path: str, vmlinux: str, addr: int) -> int:
    import drgn
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.sched import task_state_to_char
    from drgn.helpers.linux.slab import (
        for_each_slab_cache,
        slab_cache_for_each_allocated_object,
        slab_cache_usage,
        slab_object_info,
    )

    def report(name: str, t0: float, count: int) -> None:
        print(f"{name} {time.perf_counter() - t0:.4f} {count}", flush=True)

    t0 = time.perf_counter()
    prog = drgn.program_from_core_dump(path) if hasattr(drgn, "program_from_core_dump") else None
    if prog is None:
        prog = drgn.Program()
        prog.set_core_dump(path)
    prog.load_debug_info([vmlinux])
    report("open", t0, 1)

    t0 = time.perf_counter()
    tasks = []
    for task in for_each_task(prog):
        tasks.append(task)
        (int(task.pid), task.comm.string_(), task_state_to_char(task), int(task.real_parent.pid))
    report("ps", t0, len(tasks))

    t0 = time.perf_counter()
    frames = 0
    for task in tasks:
        try:
            trace = prog.stack_trace(task)
            str(trace)
            frames += len(trace)
        except (drgn.FaultError, ValueError):
            continue
    report("stacks", t0, frames)

    t0 = time.perf_counter()
    caches = list(for_each_slab_cache(prog))
    for cache in caches:
        slab_cache_usage(cache)
    report("kmastat", t0, len(caches))

    t0 = time.perf_counter()
    info = slab_object_info(prog, addr)
    report("whatis", t0, int(info is not None))

    t0 = time.perf_counter()
    objects = 0
    for cache in caches:          # stopped after BUDGET seconds: the rate is what is compared
        try:
            for _ in slab_cache_for_each_allocated_object(cache, "void"):
                objects += 1
                if objects % 1024 == 0 and time.perf_counter() - t0 > BUDGET:
                    break
        except (drgn.FaultError, ValueError, LookupError):
            continue
        if time.perf_counter() - t0 > BUDGET:
            break
    report("verify", t0, objects)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3], 16)))
