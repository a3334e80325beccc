"""The types of the kernel globals every debugger session reaches for, from the kernel's
headers, for a kernel whose BTF (which types only per-CPU variables) is all pmdb has.

A type source (pmdb.types.model.TypeSource) asked last: BTF and a debug vmlinux's DWARF
answer first; this one only names a type, which the other sources then lay out. The
declarations have not changed across the kernels pmdb reads (3.x to 7.x).
"""

from __future__ import annotations

from collections.abc import Iterable

from pmdb.types.model import Type
from pmdb.types.registry import TypeRegistry

DECLARED = {
    "init_task": "struct task_struct",      # include/linux/sched/task.h
    "init_mm": "struct mm_struct",          # include/linux/mm_types.h
    "jiffies": "unsigned long",             # include/linux/jiffies.h (unsigned long volatile)
    "jiffies_64": "u64",
    "init_pid_ns": "struct pid_namespace",  # include/linux/pid_namespace.h
    "init_uts_ns": "struct uts_namespace",  # include/linux/utsname.h
    "init_net": "struct net",               # include/net/net_namespace.h
    "init_cred": "struct cred",             # include/linux/cred.h (kernel/cred.c)
    "nr_cpu_ids": "unsigned int",           # include/linux/cpumask.h
    "system_state": "enum system_states",   # include/linux/kernel.h
}


class KernelDeclarations:
    """variable_type(name) for the DECLARED globals, by asking the registry for the type."""

    def __init__(self, registry: TypeRegistry) -> None:
        self._registry = registry

    def find_type(self, name: str, kind: str | None = None) -> Type | None:
        return None

    def type_names(self) -> Iterable[str]:
        return ()

    def variable_type(self, name: str) -> Type | None:
        spelled = DECLARED.get(name)
        return self._registry.find(spelled) if spelled is not None else None

    def variable_names(self) -> Iterable[str]:
        return DECLARED.keys()
