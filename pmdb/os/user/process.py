"""UserProcess: the OS model of a crashed user process, from its ELF core's notes.

Threads come from NT_PRSTATUS (one per thread, the faulting one first, as the
kernel writes them), the program and its arguments from NT_PRPSINFO, the
signal details from NT_SIGINFO, mappings from NT_FILE and the PT_LOADs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pmdb.arch.fpregs import FXSAVE_SIZE, NT_PRFPREG, NT_PRXFPREG, NT_X86_XSTATE, decode_fxsave
from pmdb.arch.prstatus import PrStatus, decode_prstatus
from pmdb.dumps.elf import NT_AUXV, NT_PRPSINFO, NT_PRSTATUS, NT_SIGINFO, ElfCore
from pmdb.errors import FaultError
from pmdb.os.user.labels import label_mappings
from pmdb.os.user.notes import (
    AT_NAMES,
    PrPsInfo,
    SigInfo,
    code_name,
    decode_auxv,
    decode_prpsinfo,
    decode_siginfo,
    signal_name,
)
from pmdb.symbols.objfile import ObjectFile
from pmdb.threads import Mapping, Thread
from pmdb.unwind.frame import Frame
from pmdb.unwind.user import unwind_user


class UserProcess:
    """pmdb.target.OSModel for a user core; ``objects`` is the process's ObjectSet."""

    name = "user"

    def __init__(self, core: ElfCore, objects: Any = None, *, max_frames: int = 512) -> None:
        self.core = core
        self.arch = core.arch
        self.objects = objects if objects is not None else _NoObjects()
        self.max_frames = max_frames
        self.prstatus: list[PrStatus] = [decode_prstatus(n.desc, self.arch)
                                         for n in core.notes_of(NT_PRSTATUS, "CORE")]
        ps = core.notes_of(NT_PRPSINFO, "CORE")
        self.psinfo: PrPsInfo | None = decode_prpsinfo(ps[0].desc, self.arch) if ps else None
        si = core.notes_of(NT_SIGINFO, "CORE")
        self.siginfo: SigInfo | None = decode_siginfo(si[0].desc, self.arch) if si else None
        av = core.notes_of(NT_AUXV, "CORE")
        self.auxv: list[tuple[int, int]] = decode_auxv(av[0].desc, self.arch) if av else []
        self._threads = [self._thread(i, p) for i, p in enumerate(self.prstatus, 1)]
        self._mappings: list[Mapping] | None = None

    def _thread(self, index: int, st: PrStatus) -> Thread:
        return Thread(id=st.pid, registers=dict(st.registers), index=index,
                      signal=thread_signal(st, index, self.signal),
                      extra={"ppid": st.ppid, "pgrp": st.pgrp, "sid": st.sid, "si_code": st.code})

    # -- OSModel -----------------------------------------------------------------------

    def threads(self) -> Sequence[Thread]:
        return self._threads

    def fp_registers(self, thread: Thread) -> dict[str, int]:
        """The thread's x87/SSE/AVX registers (x86 only; empty when the core has none)."""
        if self.arch.name not in ("x86_64", "i386") or not thread.index:
            return {}
        notes = _thread_notes(self.core.notes, thread.index - 1)
        xstate = notes.get(NT_X86_XSTATE)
        fx = notes.get(NT_PRFPREG) if self.arch.bits == 64 else notes.get(NT_PRXFPREG)
        fx = fx if fx is not None and len(fx) >= FXSAVE_SIZE else xstate
        return decode_fxsave(fx, self.arch.bits, xstate) if fx is not None else {}

    def stack(self, thread: Thread) -> list[Frame]:
        """Unwound frames of a thread."""
        return unwind_user(thread.registers, arch=self.arch, memory=self.core.space(),
                           objects=self.objects, max_frames=self.max_frames)

    def mappings(self) -> Sequence[Mapping]:
        """NT_FILE mappings and anonymous PT_LOADs, in address order."""
        if self._mappings is None:
            self._mappings = label_mappings(build_mappings(self.core), self.aux, self.core.space(),
                                            self.arch.ptr_size, self.arch.byteorder == "little")
        return self._mappings

    @property
    def signal(self) -> int | None:
        """The signal that killed the process: the first thread's pr_cursig, as gdb reads it
        ("Program terminated with signal"). None for a snapshot: gdb's gcore of a running
        process writes cursig 0 (its NT_SIGINFO then holds the SIGSTOP of gdb's attach, which
        killed nothing)."""
        if not self.prstatus:
            return self.siginfo.signo or None if self.siginfo else None
        return self.prstatus[0].cursig or None

    def program(self) -> tuple[str, str]:
        """(program name, full argument string) from NT_PRPSINFO."""
        if self.psinfo is None:
            return "", ""
        return self.psinfo.fname, self.psinfo.psargs

    def aux(self, name: str) -> int | None:
        """An auxv entry's value by name (AT_PHDR ...), or None."""
        return next((v for t, v in self.auxv if AT_NAMES.get(t) == name), None)

    def executable_address(self) -> int | None:
        """An address inside the executable: AT_PHDR (its program headers, where the kernel
        mapped it), else AT_ENTRY; None without an auxv note."""
        phdr = self.aux("AT_PHDR")
        return phdr if phdr else self.aux("AT_ENTRY") or None

    def executable(self) -> str:
        """The recorded path of the executable: the NT_FILE mapping holding AT_PHDR/AT_ENTRY,
        else AT_EXECFN's string (as given to execve), else a file named like the program."""
        files = self.core.files
        for addr in (self.aux("AT_PHDR"), self.aux("AT_ENTRY")):
            hit = next((fm for fm in files if addr and fm.start <= addr < fm.end), None)
            if hit is not None:
                return hit.path
        execfn = self.aux("AT_EXECFN")
        if execfn:
            try:
                return self.core.space().cstring(execfn, 4096).decode("utf-8", "replace")
            except FaultError:
                pass
        fname = self.psinfo.fname if self.psinfo else ""
        for fm in files:
            if fname and os.path.basename(fm.path).startswith(fname):
                return fm.path
        return ""

    def status(self) -> list[tuple[str, str]]:
        return process_status(self)

    def auxv_named(self) -> list[tuple[str, int]]:
        return [(AT_NAMES.get(t, str(t)), v) for t, v in self.auxv]

    def close(self) -> None:
        closer = getattr(self.objects, "close", None)
        if closer:
            closer()
        self.core.close()

    def main_object(self) -> ObjectFile | None:
        """The executable's loaded object; None when it was not found (or nothing was loaded)."""
        main = getattr(self.objects, "main", None)
        return main if isinstance(main, ObjectFile) else None


def _thread_notes(notes: Sequence[Any], index: int) -> dict[int, bytes]:
    """The notes (type -> desc) that follow the index-th NT_PRSTATUS, up to the next one:
    the kernel and gdb write each thread's register sets after its prstatus."""
    seen = -1
    out: dict[int, bytes] = {}
    for note in notes:
        if note.type == NT_PRSTATUS and note.name == "CORE":
            seen += 1
            if seen > index:
                break
        elif seen == index:
            out.setdefault(note.type, note.desc)
    return out


def thread_signal(st: PrStatus, index: int, fatal: int | None) -> int | None:
    """The signal to mark a thread with. The kernel writes the fatal signal into every
    thread's pr_cursig, but only the first thread (the one that took it) died of it; another
    thread is marked by a signal of its own: a different cursig (gcore records each thread's
    stop signal) or the lowest one pending on it."""
    if index == 1:
        return fatal
    if st.cursig and st.cursig != fatal:
        return st.cursig
    if st.sigpend:
        return (st.sigpend & -st.sigpend).bit_length()
    return None


def build_mappings(core: ElfCore) -> list[Mapping]:
    """One Mapping per NT_FILE entry (perms and in_dump from the PT_LOAD covering it),
    plus the PT_LOADs no file backs (heap, stack, anonymous memory)."""
    loads = sorted(core.loads, key=lambda p: p.vaddr)
    out: list[Mapping] = []
    covered: list[tuple[int, int]] = []
    for fm in core.files:
        ph = next((p for p in loads if p.vaddr <= fm.start < p.vaddr + max(p.memsz, 1)), None)
        perms = ph.perms if ph else "---"
        in_dump = ph is not None and ph.vaddr + ph.filesz >= fm.end
        out.append(Mapping(fm.start, fm.end, perms, fm.offset, fm.path, in_dump))
        covered.append((fm.start, fm.end))
    for ph in loads:
        if any(s <= ph.vaddr < e for s, e in covered):
            continue
        out.append(Mapping(ph.vaddr, ph.vaddr + ph.memsz, ph.perms, 0, "", ph.filesz >= ph.memsz))
    return sorted(out, key=lambda m: m.start)


def process_status(proc: UserProcess) -> list[tuple[str, str]]:
    """The (field, value) rows of ``::status`` for a user core."""
    arch = proc.arch
    fname, args = proc.program()
    rows = [("debugging core file", proc.core.path), ("program", fname or "?")]
    if args:
        # one row: a newline in an argument (python3 -c 'SCRIPT') would break it
        rows.append(("arguments", "".join(c if c.isprintable() else c.encode("unicode_escape").decode()
                                          for c in args)))
    pid = proc.psinfo.pid if proc.psinfo else (proc.prstatus[0].pid if proc.prstatus else 0)
    rows.append(("pid", str(pid)))
    exe = proc.executable()
    if exe:
        rows.append(("executable", exe))
        rows.append(("executable file", _executable_check(proc)))
    rows += _signal_rows(proc)
    rows.append(("threads", str(len(proc.threads()))))
    rows.append(("architecture", f"{arch.name} ({arch.bits}-bit, {arch.byteorder}-endian)"))
    return rows


def _signal_rows(proc: UserProcess) -> list[tuple[str, str]]:
    """signal, and the sender (kill, tkill, sigqueue) or the fault address; a core no signal
    made (gcore) says so instead of passing the attach's SIGSTOP off as the cause."""
    sig, si, arch = proc.signal, proc.siginfo, proc.arch
    if not sig:
        return [("signal", "none (the process was not killed: a snapshot, e.g. gdb's gcore)")]
    text = f"{signal_name(sig, arch)} ({sig})"
    if si is None or si.signo != sig:
        return [("signal", text)]
    rows = [("signal", text + f", code {code_name(sig, si.code, arch)} ({si.code})")]
    if si.pid is not None:
        rows.append(("sent by", f"pid {si.pid}, uid {si.uid}"))
    if si.addr is not None:
        rows.append(("fault address", f"{si.addr:#x}"))
    return rows


def _executable_check(proc: UserProcess) -> str:
    """Where the executable was found, and whether its build-id is the one in the core."""
    main = getattr(proc.objects, "main", None)
    if main is None:
        return "not found (symbols unavailable)"
    from pmdb.symbols.finder import build_id_in_memory, build_id_of_file

    in_core = build_id_in_memory(proc.core.space(), main.start)
    on_disk = build_id_of_file(main.path)
    if in_core is None or on_disk is None:
        verdict = "build-id not checked"
    elif in_core == on_disk:
        verdict = "build-id matches"
    else:
        verdict = "build-id DIFFERS from the core's"
    return f"{main.path} ({verdict})"


class _NoObjects:
    """An empty object set, when no executable or library could be loaded."""

    objects: list[Any] = []
    warnings: list[str] = []

    def object_at(self, addr: int) -> None:
        return None

    def close(self) -> None:
        pass
