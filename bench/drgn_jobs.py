"""``python -m bench.drgn_jobs JOB DUMP VMLINUX``: the versus table's jobs done by drgn with DWARF.

Run as a fresh process by bench/versus.py; imports drgn and nothing of pmdb, so its time is
drgn's. J1: the kernel's utsname, the task list (pid, ppid, cpu, state, comm) and the log;
J2: every task's stack; J3: every slab cache's usage (drgn's slab_cache_usage).
"""

from __future__ import annotations

import sys


def j1(prog) -> list[str]:  # type: ignore[no-untyped-def]
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.printk import get_dmesg
    from drgn.helpers.linux.sched import task_cpu, task_state_to_char

    uts = prog["init_uts_ns"].name
    out = [f"{f}: {getattr(uts, f).string_().decode()}" for f in ("nodename", "release", "version", "machine")]
    for t in sorted(for_each_task(prog), key=lambda t: int(t.pid)):
        out.append(f"{int(t.pid)} {int(t.real_parent.pid)} {task_cpu(t)} {task_state_to_char(t)} "
                   f"{t.value_():#x} {t.comm.string_().decode()}")
    out += get_dmesg(prog).decode(errors="replace").splitlines()
    return out


def j2(prog) -> list[str]:  # type: ignore[no-untyped-def]
    from drgn.helpers.linux.pid import for_each_task

    out = []
    for t in for_each_task(prog):
        out.append(f"PID: {int(t.pid)} TASK: {t.value_():#x} COMMAND: {t.comm.string_().decode()}")
        try:
            out += str(prog.stack_trace(t)).splitlines()
        except (ValueError, LookupError) as err:
            out.append(f"  ({err})")
    return out


def j3(prog) -> list[str]:  # type: ignore[no-untyped-def]
    from drgn.helpers.linux.slab import for_each_slab_cache, slab_cache_usage

    out = []
    for cache in for_each_slab_cache(prog):
        u = slab_cache_usage(cache)
        out.append(f"{cache.value_():#x} {int(cache.object_size)} {u.active_objs} {u.num_objs} "
                   f"{u.num_slabs} {cache.name.string_().decode()}")
    return out


def main(job: str, dump: str, vmlinux: str) -> int:
    import drgn

    prog = drgn.Program()
    prog.set_core_dump(dump)
    prog.load_debug_info([vmlinux])
    lines = {"J1": j1, "J2": j2, "J3": j3}[job](prog)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m bench.drgn_jobs J1|J2|J3 DUMP VMLINUX")
    sys.exit(main(*sys.argv[1:]))
