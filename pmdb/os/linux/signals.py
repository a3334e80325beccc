"""A task's signal state: handlers (sighand_struct), pending and blocked sets, queues.

What crash's ``sig`` shows, read from ``struct task_struct``'s ``signal``, ``sighand``,
``pending`` and ``blocked`` with the kernel's BTF types. Signal sets are read as one
integer of all their words (``sigset_t.sig[]``), so 32-bit kernels' two words agree
with 64-bit kernels' one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmdb.errors import CorruptionError
from pmdb.types.lists import ListLink, walk_list
from pmdb.types.model import Type
from pmdb.types.value import Object

# sa_flags bits (include/uapi/asm-generic/signal-defs.h; x86's SA_RESTORER), in the order
# crash names them
SA_FLAGS = (("SA_NOCLDSTOP", 0x1), ("SA_RESTORER", 0x04000000), ("SA_NOCLDWAIT", 0x2),
            ("SA_SIGINFO", 0x4), ("SA_ONSTACK", 0x08000000), ("SA_RESTART", 0x10000000),
            ("SA_NODEFER", 0x40000000), ("SA_RESETHAND", 0x80000000))

# the thread_info flag that says a signal is pending (arch/*/include/asm/thread_info.h)
TIF_SIGPENDING = {"x86_64": 2, "i386": 2, "aarch64": 0}

MAX_QUEUED = 1 << 16       # sigqueue entries before a queue is called corrupt


def sigset(obj: Object) -> int:
    """A ``sigset_t``'s bits as one integer (word 0 lowest)."""
    words = obj.member("sig")
    n = words.type.strip().count or 1
    width = 8 * words[0].size
    return sum(int(words[i]) << (width * i) for i in range(n))


def flag_names(flags: int) -> str:
    """``(SA_RESTORER|SA_RESTART)`` as crash spells sa_flags; empty for none it knows."""
    names = [name for name, bit in SA_FLAGS if flags & bit]
    return f"({'|'.join(names)})" if names else ""


@dataclass(frozen=True)
class Handler:
    """One signal's ``struct k_sigaction``."""

    signal: int
    address: int
    handler: int
    mask: int
    flags: int


def handlers(sighand: Object) -> list[Handler]:
    """Every signal's action, signal 1 first (``sighand_struct.action[_NSIG]``)."""
    actions = sighand.member("action")
    out = []
    for i in range(actions.type.strip().count or 0):
        sa = actions[i].member("sa")
        out.append(Handler(i + 1, actions[i].address, int(sa.member("sa_handler")),
                           sigset(sa.member("sa_mask")), int(sa.member("sa_flags"))))
    return out


def queued(pending: Object, sigqueue_t: Type) -> list[tuple[int, int]]:
    """(signal number, address of its siginfo) of each ``struct sigqueue`` queued on a
    ``struct sigpending`` (its ``list`` of ``sigqueue.list``), bounded and loop-checked."""
    link, info = (sigqueue_t.find_member(m) for m in ("list", "info"))
    if link is None or info is None:
        raise CorruptionError(pending.address, "struct sigqueue has no list or info")
    out = []
    for node in walk_list(pending.memory, 0, ListLink(link[1] // 8, link[1] // 8), MAX_QUEUED,
                          head=pending.member("list").address):
        siginfo = Object(pending.memory, sigqueue_t, node).member("info")
        out.append((int(siginfo.member("si_signo")), siginfo.address))
    return out
