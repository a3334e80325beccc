"""The timer wheel: every pending ``struct timer_list`` of a CPU's ``timer_bases``.

Since 4.8 each CPU has ``timer_bases[NR_BASES]`` (BASE_STD, and BASE_DEF for
deferrable timers when CONFIG_NO_HZ_COMMON), each an array of ``vectors`` (hlist
heads) whose chains link ``timer_list.entry``. Chains are walked bounded and
cycle-checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmdb.memory.space import AddressSpace
from pmdb.types.lists import ListLink, walk_list
from pmdb.types.registry import TypeRegistry
from pmdb.types.value import Object


@dataclass(frozen=True)
class Timer:
    address: int            # struct timer_list
    expires: int            # in jiffies
    function: int


def wheel_timers(mem: AddressSpace, types: TypeRegistry, base: int) -> list[Timer]:
    """The timers queued on the ``struct timer_base`` at base, vector by vector, in chain order."""
    timer_t = types.lookup("struct timer_list")
    entry = timer_t.find_member("entry")
    assert entry is not None
    off = entry[1] // 8
    vectors = Object(mem, types.lookup("struct timer_base"), base).member("vectors")
    out = []
    for i in range(vectors.type.strip().count or 0):
        first = mem.ptr(vectors[i].address)
        if not first:
            continue
        for node in walk_list(mem, first - off, ListLink(off, off)):
            t = Object(mem, timer_t, node)
            out.append(Timer(node, int(t.member("expires")), int(t.member("function"))))
    return out
