"""A crash's stack signature: the function names that say where it died, the same on every
machine and every boot that died the same way.

From the crashing task's unwound frames (innermost first), as (name, at_exception) pairs:
the frames of the panic/oops machinery above the crash point are cut off, compiler clone
suffixes are folded (``.part.N``, ``.isra.N``, ``.constprop.N``, ``.cold``), syscall
wrappers are named by their syscall (``__x64_sys_ioctl`` and ``__arm64_sys_ioctl`` are both
``sys_ioctl``), entry and interrupt boilerplate is dropped, recursion is one frame. Pure
functions over names: reading the dump is record.py's job.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

UNKNOWN = "?"           # a frame no symbol names (a module without symbols, a library's pc)
MAX_FRAMES = 12         # frames a signature keeps: enough to tell callers apart
TOP_FRAMES = 2          # frames near-equal signatures share: the faulting function and its caller

_CLONE = re.compile(r"\.(?:cold|part\.\d+|isra\.\d+|constprop\.\d+|llvm\.\d+|lto_priv\.\d+|localalias)(?=\.|$)")
_SYSCALL = re.compile(r"^(?:__x64_sys_|__ia32_sys_|__arm64_sys_|__ia32_compat_sys_|__x32_compat_sys_"
                      r"|__se_sys_|__do_sys_|__arm64_compat_sys_)(\w+)$")

# Where the kernel goes once it has decided to die: everything above (inner to) the last of
# these on the panic stack is the dump being taken, not the crash.
PANIC_FUNCTIONS = frozenset({
    "panic", "vpanic", "nmi_panic", "__crash_kexec", "crash_kexec", "oops_end", "die",
    "__die", "die_kernel_fault", "panic_bad_stack", "handle_stack_overflow", "bust_spinlocks",
})

# Entry, exception and interrupt plumbing: present on every stack that passes through it,
# different on each CPU and kernel version, and never the reason for a crash.
_BOILERPLATE = re.compile(r"^(?:"
                          r"entry_\w+|ret_from_fork\w*|ret_from_intr|do_syscall_\w+|do_fast_syscall_32|"
                          r"__do_fast_syscall_32|do_SYSENTER_32|do_int80_syscall_32|x64_sys_call|"
                          r"ia32_sys_call|syscall_exit_\w+|asm_exc_\w+|asm_sysvec_\w+|asm_common_interrupt|"
                          r"asm_call_irq_on_stack|asm_call_on_stack|exc_\w+|sysvec_\w+|__sysvec_\w+|"
                          r"common_interrupt|irq_exit\w*|handle_exception|end_repeat_nmi|repeat_nmi|"
                          r"nmi_restore|default_do_nmi|do_nmi|do_error_trap|do_trap|doublefault_shim|"
                          r"el[01]h?t?_64_(?:sync|irq|error)(?:_handler)?|el[01]_\w+|do_el0_svc\w*|"
                          r"invoke_syscall|el0_svc_common|call_on_irq_stack|do_interrupt_handler|"
                          r"__bad_stack|handle_bad_stack|"
                          r"secondary_startup_\w+|common_startup_64|x86_64_start_\w+|startup_32_smp|"
                          r"i386_start_kernel|start_kernel|arch_call_rest_init|rest_init|"
                          r"cpu_startup_entry|secondary_start_kernel|__secondary_switched|start_secondary"
                          r")$")


def fold(name: str) -> str:
    """A function's name with compiler clone suffixes removed and a syscall wrapper named
    by its syscall (``__x64_sys_ioctl`` -> ``sys_ioctl``)."""
    base = _CLONE.sub("", name)
    while True:
        shorter = _CLONE.sub("", base)
        if shorter == base:
            break
        base = shorter
    hit = _SYSCALL.match(base)
    return f"sys_{hit.group(1)}" if hit else base


# The soft-lockup watchdog's timer, and the softirq work an interrupt's exit runs on top of
# whatever it interrupted: when the watchdog's tick lands in that work, the CPU was stuck
# below it, in the context that interrupt came into.
SOFTLOCKUP_WATCHDOG = "watchdog_timer_fn"
_SOFTIRQ_ON_IRQ_EXIT = frozenset({"handle_softirqs", "__do_softirq", "do_softirq_own_stack",
                                  "__irq_exit_rcu", "irq_exit_rcu", "irq_exit"})


def crash_frames(frames: Sequence[tuple[str, bool]]) -> list[str]:
    """The folded names from the crash point outwards. The crash point is the first frame
    an exception interrupted (a fault, a trap, the timer of a soft lockup, an NMI) below the
    last panic function, else the frame that called the last panic function; a stack with
    neither is kept whole. A soft lockup's tick that interrupted softirq work run on an
    interrupt's exit points past it, to what that interrupt interrupted: the same lockup
    signs the same whichever softirq the tick happened to land in."""
    names = [fold(n) for n, _ in frames]
    last_panic = max((i for i, n in enumerate(names) if n in PANIC_FUNCTIONS), default=-1)
    interrupted = [i for i in range(last_panic + 1, len(frames)) if frames[i][1]]
    if not interrupted:
        return names[last_panic + 1:]
    start = interrupted[0]
    if SOFTLOCKUP_WATCHDOG in names[:start]:
        for nxt in interrupted[1:]:
            if not _SOFTIRQ_ON_IRQ_EXIT.intersection(names[start:nxt]):
                break
            start = nxt
    return names[start:]


def boilerplate(name: str) -> bool:
    """Whether a (folded) function is entry, exception or interrupt plumbing, which a
    signature leaves out."""
    return _BOILERPLATE.match(name) is not None


def signature(frames: Sequence[tuple[str, bool]]) -> list[str]:
    """The normalized signature: crash frames without boilerplate, recursion folded into
    one frame, at most MAX_FRAMES."""
    out: list[str] = []
    for name in crash_frames(frames):
        if boilerplate(name) or (out and out[-1] == name):
            continue
        out.append(name)
        if len(out) == MAX_FRAMES:
            break
    return out


def user_signature(frames: Sequence[str]) -> list[str]:
    """A user thread's signature: folded names, recursion as one frame, at most MAX_FRAMES
    (a user stack has no kernel machinery above its crash point)."""
    out: list[str] = []
    for name in frames:
        name = fold(name)
        if not (out and out[-1] == name):
            out.append(name)
        if len(out) == MAX_FRAMES:
            break
    return out


def signature_id(frames: Sequence[str]) -> str:
    """A short stable name for a signature (12 hex digits of its SHA-256)."""
    return hashlib.sha256("\n".join(frames).encode()).hexdigest()[:12]


def near_key(frames: Sequence[str]) -> tuple[str, ...]:
    """What near-equal signatures share: their top frames."""
    return tuple(frames[:TOP_FRAMES])
