"""Decoding a user core's notes: NT_PRPSINFO, NT_SIGINFO, NT_AUXV (NT_PRSTATUS: pmdb.arch.prstatus).

The layouts are the kernel's ``struct elf_prstatus`` / ``elf_prpsinfo`` and
``siginfo_t``; they differ by word size (and i386 keeps 16-bit uids).
A short note decodes as far as it goes; a missing field is simply absent.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pmdb.arch import Arch

SIGNALS = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
           7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2",
           13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD",
           18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG",
           24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH",
           29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS"}
# SPARC numbers some signals differently (arch/sparc/include/uapi/asm/signal.h)
SPARC_SIGNALS = {**SIGNALS, 7: "SIGEMT", 10: "SIGBUS", 12: "SIGSYS", 16: "SIGURG", 17: "SIGSTOP",
                 18: "SIGTSTP", 19: "SIGCONT", 20: "SIGCHLD", 23: "SIGIO", 29: "SIGLOST",
                 30: "SIGUSR1", 31: "SIGUSR2"}

# si_code meanings for the signals that carry a fault address
SEGV_CODES = {1: "SEGV_MAPERR", 2: "SEGV_ACCERR", 3: "SEGV_BNDERR", 4: "SEGV_PKUERR"}
BUS_CODES = {1: "BUS_ADRALN", 2: "BUS_ADRERR", 3: "BUS_OBJERR"}
SI_CODES = {0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -2: "SI_TIMER", -3: "SI_MESGQ",
            -4: "SI_ASYNCIO", -5: "SI_SIGIO", -6: "SI_TKILL"}
# codes whose siginfo names the sender (the union's _kill / _rt: si_pid, si_uid), not a fault
SENDER_CODES = (0, -1, -6)
SI_KERNEL = 0x80


def signal_name(signo: int, arch: Arch) -> str:
    table = SPARC_SIGNALS if arch.name == "sparc64" else SIGNALS
    return table.get(signo, f"signal {signo}")


def code_name(signo: int, code: int, arch: Arch) -> str:
    name = signal_name(signo, arch)
    if name == "SIGSEGV" and code in SEGV_CODES:
        return SEGV_CODES[code]
    if name == "SIGBUS" and code in BUS_CODES:
        return BUS_CODES[code]
    return SI_CODES.get(code, str(code))


@dataclass
class PrPsInfo:
    state: int
    sname: str
    uid: int
    gid: int
    pid: int
    ppid: int
    fname: str
    psargs: str


@dataclass
class SigInfo:
    signo: int
    errno: int
    code: int
    addr: int | None              # the fault address, for a fault the kernel raised
    pid: int | None = None        # the sender, for a signal sent by kill/tkill/sigqueue
    uid: int | None = None


def _e(arch: Arch) -> str:
    return "<" if arch.byteorder == "little" else ">"


def decode_prpsinfo(desc: bytes, arch: Arch) -> PrPsInfo:
    """elf_prpsinfo; 32-bit layouts with 16-bit uids (i386: 124 bytes) and 32-bit uids (128)."""
    e = _e(arch)
    if arch.ptr_size == 8:
        d = desc.ljust(136, b"\0")
        state, sname = d[0], d[1]
        uid, gid, pid, ppid = struct.unpack_from(e + "IIii", d, 16)
        fname_at = 40
    elif len(desc) >= 128:
        d = desc.ljust(128, b"\0")
        state, sname = d[0], d[1]
        uid, gid, pid, ppid = struct.unpack_from(e + "IIii", d, 8)
        fname_at = 32
    else:
        d = desc.ljust(124, b"\0")
        state, sname = d[0], d[1]
        uid, gid, pid, ppid = struct.unpack_from(e + "HHii", d, 8)
        fname_at = 28
    fname = _cstr(d[fname_at:fname_at + 16])
    psargs = _cstr(d[fname_at + 16:fname_at + 96])
    return PrPsInfo(state, chr(sname) if sname else "", uid, gid, pid, ppid, fname, psargs)


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace").rstrip()


def decode_siginfo(desc: bytes, arch: Arch) -> SigInfo:
    """siginfo_t: signo, errno, code, then (64-bit: after 4 bytes padding) a union read by
    the code, as the kernel fills it: a sent signal (SI_USER, SI_TKILL, SI_QUEUE) carries the
    sender's pid and uid there, even a SIGSEGV sent with kill; only a fault the kernel raised
    (code > 0) carries si_addr."""
    e, w = _e(arch), arch.ptr_size
    at = 12 if w == 4 else 16
    d = desc.ljust(at + max(w, 8), b"\0")
    signo, errno, code = struct.unpack_from(e + "iii", d, 0)
    if code in SENDER_CODES:
        pid, uid = struct.unpack_from(e + "iI", d, at)
        return SigInfo(signo, errno, code, None, pid, uid)
    addr = None
    faults = ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGEMT", "SIGTRAP")
    if 0 < code < SI_KERNEL and signal_name(signo, arch) in faults:
        addr = struct.unpack_from(e + ("I" if w == 4 else "Q"), d, at)[0]
    return SigInfo(signo, errno, code, addr)


def decode_auxv(desc: bytes, arch: Arch) -> list[tuple[int, int]]:
    """(type, value) pairs up to AT_NULL."""
    e, w = _e(arch), arch.ptr_size
    fmt = e + ("II" if w == 4 else "QQ")
    out = []
    for at in range(0, len(desc) - 2 * w + 1, 2 * w):
        t, v = struct.unpack_from(fmt, desc, at)
        if t == 0:
            break
        out.append((t, v))
    return out


AT_NAMES = {3: "AT_PHDR", 4: "AT_PHENT", 5: "AT_PHNUM", 6: "AT_PAGESZ", 7: "AT_BASE", 8: "AT_FLAGS",
            9: "AT_ENTRY", 11: "AT_UID", 12: "AT_EUID", 13: "AT_GID", 14: "AT_EGID", 15: "AT_PLATFORM",
            16: "AT_HWCAP", 17: "AT_CLKTCK", 23: "AT_SECURE", 24: "AT_BASE_PLATFORM", 25: "AT_RANDOM",
            26: "AT_HWCAP2", 31: "AT_EXECFN", 32: "AT_SYSINFO", 33: "AT_SYSINFO_EHDR",
            51: "AT_MINSIGSTKSZ"}
