"""Register tables for the unicorn x86 engines: names -> unicorn ids, sub-registers -> full.

Kept apart from the engine so the tables read as data. ``SIDE_REGS`` are
registers a core records that the engine keeps beside unicorn (``orig_rax``,
the segment selectors), so a thread's register set round-trips.
"""

from __future__ import annotations

from unicorn import x86_const as X

_GPR64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
          "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
_GPR32 = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp")
_SEGS = ("cs", "ss", "ds", "es", "fs", "gs")


def _ids(names: tuple[str, ...]) -> dict[str, int]:
    return {n: getattr(X, f"UC_X86_REG_{n.upper()}") for n in names}


REG_IDS: dict[str, dict[str, int]] = {
    "x86_64": _ids(_GPR64 + ("rip", "eflags")),
    "i386": _ids(_GPR32 + ("eip", "eflags")),
}

# the thread pointer: written through the MSRs, as the kernel does (wrfsbase/arch_prctl)
MSR = {"fs_base": 0xC0000100, "gs_base": 0xC0000101}

# Segment selectors are kept, not loaded: loading one in unicorn would reset the
# segment base (fs_base) from a descriptor table the emulator does not have.
SIDE_REGS = {"x86_64": ("orig_rax",) + _SEGS, "i386": ("orig_eax",) + _SEGS}


def _full_x86_64() -> dict[str, str]:
    full: dict[str, str] = {}
    for letter in "abcd":
        for sub in (f"{letter}l", f"{letter}h", f"{letter}x", f"e{letter}x", f"r{letter}x"):
            full[sub] = f"r{letter}x"
    for base in ("si", "di", "bp", "sp"):
        for sub in (f"{base}l", base, f"e{base}", f"r{base}"):
            full[sub] = f"r{base}"
    for n in range(8, 16):
        for sub in (f"r{n}b", f"r{n}w", f"r{n}d", f"r{n}"):
            full[sub] = f"r{n}"
    return full


def _full_i386() -> dict[str, str]:
    full: dict[str, str] = {}
    for letter in "abcd":
        for sub in (f"{letter}l", f"{letter}h", f"{letter}x", f"e{letter}x"):
            full[sub] = f"e{letter}x"
    for base in ("si", "di", "bp", "sp"):
        for sub in (base, f"e{base}"):
            full[sub] = f"e{base}"
    return full


# capstone's name of a written (sub-)register -> the register a trace reports
FULL_REG = {"x86_64": _full_x86_64(), "i386": _full_i386()}
