"""Stack unwinding for user processes: DWARF CFI first, frame pointers as the fallback.

Frame 0 comes from the thread's registers. Each further frame is computed by
the CFI of the object holding the pc (found through the process's ObjectSet),
or, when there is none, by the frame-pointer chain (SPARC: register windows).
The walk ends with a note on Frame.note: end of stack, unreadable memory,
pc 0, a loop, or the frame limit.
"""

from __future__ import annotations

import struct
import weakref
from typing import Any, Protocol

from elftools.common.exceptions import ELFError

from pmdb.arch import Arch
from pmdb.errors import FaultError, FormatError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.memimage import image_object
from pmdb.symbols.objfile import ObjectFile
from pmdb.unwind.cfi import CfiTable, Row, evaluate_expr
from pmdb.unwind.frame import Frame
from pmdb.unwind.framepointer import StepFailed, callee_saved, fp_step

_ELF_ERRORS = (ELFError, struct.error, ValueError, KeyError, AssertionError)


class _Objects(Protocol):
    def object_at(self, addr: int) -> Any: ...


# CFI tables per ObjectFile, built once; weak so a closed target frees them.
_TABLES: weakref.WeakKeyDictionary[Any, list[CfiTable]] = weakref.WeakKeyDictionary()


def cfi_tables(obj: Any, arch: Arch) -> list[CfiTable]:
    """The (cached) CFI of an object file, in the order to ask: its own .eh_frame and
    .debug_frame, then its separate debug file's .debug_frame (a program built without
    unwind tables keeps its CFI there; the debug file's .eh_frame is NOBITS). Tables that
    are empty or unreadable are left out."""
    try:
        return _TABLES[obj]
    except (KeyError, TypeError):
        pass
    tables: list[CfiTable] = []
    for elf in (lambda: obj.elf, lambda: getattr(obj, "debug_elf", None)):
        try:
            found = elf()
            table = CfiTable(found, window_save=arch.name == "sparc64") if found is not None else None
        except FormatError:
            table = None
        if table is not None and not table.empty:
            tables.append(table)
    try:
        _TABLES[obj] = tables
    except TypeError:
        pass  # not weak-referenceable: no cache, still correct
    return tables


# Per address space: page -> the in-memory ELF image covering it (or None).
_IMAGES: weakref.WeakKeyDictionary[AddressSpace, dict[int, ObjectFile | None]] = \
    weakref.WeakKeyDictionary()


def memory_object(memory: AddressSpace, pc: int, arch: Arch) -> ObjectFile | None:
    """The ELF image (the vDSO) whose header sits a few pages below pc; no file on disk has
    it. The process's ObjectSet holds the vDSO when the core's auxv says where it is; this
    finds it for a core without one."""
    page = arch.page_size
    cache = _IMAGES.setdefault(memory, {})
    key = pc // page
    if key in cache:
        return cache[key]
    found = None
    for n in range(8):
        base = (key - n) * page
        try:
            if memory.read(base, 4) == b"\x7fELF":
                found = image_object(memory, base, "[vdso]")
                break
        except FaultError:
            break
    cache[key] = found
    return found


def unwind_user(regs: dict[str, int], *, arch: Arch, memory: AddressSpace, objects: _Objects,
                max_frames: int = 512) -> list[Frame]:
    """Frame 0 from regs, then DWARF CFI (.eh_frame / .debug_frame of the object containing pc, via
    objects.object_at(pc)), falling back to frame pointers; stops with Frame.note saying why."""
    frame = Frame(0, regs.get(arch.pc, 0), regs.get(arch.sp, 0), regs=dict(regs), method="regs")
    frames = [frame]
    exact = True          # frame 0's pc is where it stopped, not a return address
    seen = {(frame.pc, frame.sp)}
    while True:
        if frame.pc == 0:
            frame.note = "end of stack (pc is 0)"
            break
        if len(frames) >= max_frames:
            frame.note = f"stopped after {max_frames} frames"
            break
        try:
            caller, method, cfa, exact = _step(frame, exact, arch, memory, objects)
        except StepFailed as why:
            frame.note = str(why)
            frame.cfa = why.cfa
            break
        frame.cfa = cfa
        nxt = Frame(frame.level + 1, caller.get(arch.pc, 0), caller.get(arch.sp, 0),
                    regs=caller, method=method, call_site=not exact)
        if (nxt.pc, nxt.sp) in seen or _goes_down(frame, nxt, arch):
            frame.note = f"stack loops at {nxt.pc:#x} (sp {nxt.sp:#x})"
            break
        if nxt.pc == 0:
            frame.note = "end of stack (return address 0)"
            break
        seen.add((nxt.pc, nxt.sp))
        if method == "cfi" and exact:
            # frame is the signal trampoline; its caller was interrupted, its pc is exact
            frame.note = frame.note or "signal handler called"
            nxt.note = "interrupted by a signal"
            # the trampoline was not called: gdb names it by its pc (__restore_rt,
            # __kernel_sigreturn), whose byte before belongs to no function
            frame.call_site = False
        frames.append(nxt)
        frame = nxt
    return frames


def _goes_down(callee: Frame, caller: Frame, arch: Arch) -> bool:
    """A caller's stack pointer is above its callee's (the stack grows down everywhere here)."""
    return caller.sp < callee.sp


def _step(frame: Frame, exact: bool, arch: Arch, memory: AddressSpace,
          objects: _Objects) -> tuple[dict[str, int], str, int | None, bool]:
    """(caller registers, method, this frame's CFA, whether the caller's pc is exact)."""
    lookup = frame.pc if exact else frame.pc - 1    # the call, not what follows it
    obj = objects.object_at(lookup) or memory_object(memory, lookup, arch)
    bias = obj.bias if obj is not None else 0
    for table in cfi_tables(obj, arch) if obj is not None else ():
        try:
            row = table.row(lookup - bias)
        except FormatError as err:
            raise StepFailed(str(err)) from None
        if row is not None:
            try:
                caller, cfa = apply_row(row, frame.regs, arch, memory, table)
            except FaultError as err:
                raise StepFailed(f"unreadable stack at {err.address:#x} ({err.reason})") from None
            return caller, "cfi", cfa, row.signal_frame
    return fp_step(frame.regs, arch, memory), "fp", None, False


def apply_row(row: Row, regs: dict[str, int], arch: Arch, memory: AddressSpace,
               table: CfiTable) -> tuple[dict[str, int], int]:
    """The caller's registers by one CFI row (DWARF 6.4.1)."""
    names = arch.dwarf_regs
    mask = (1 << arch.bits) - 1

    def reg(num: int) -> int:
        name = names.get(num)
        if name is None or name not in regs:
            raise StepFailed(f"CFI needs register {name or num}, which is unknown here")
        return regs[name]

    def run(expr: bytes, push: tuple[int, ...] = ()) -> int:
        try:
            return evaluate_expr(table.parser().parse_expr(expr), reg=reg, deref=memory.ptr,
                                 mask=mask, push=push)
        except (IndexError, KeyError, ValueError) as err:
            raise StepFailed(f"bad CFI expression ({err})") from None
        except FormatError as err:
            raise StepFailed(str(err)) from None

    cfa = run(row.cfa_expr) if row.cfa_expr is not None else (
        (reg(row.cfa_reg) + row.cfa_offset) & mask if row.cfa_reg is not None else None)
    if cfa is None:
        raise StepFailed("CFI gives no CFA rule")
    caller = {k: regs[k] for k in callee_saved(arch) if k in regs}
    if arch.name == "sparc64":
        caller.update({k: v for k, v in regs.items() if k[0] in "gli" and k[1:].isdigit()})
    caller[arch.sp] = cfa - arch.stack_bias
    for num, rule in row.rules.items():
        name = names.get(num)
        if name is None:
            continue
        value = _rule_value(rule.kind, rule.arg, cfa, reg, run, memory, regs, name)
        if value is None:
            caller.pop(name, None)
        else:
            caller[name] = value & mask
    try:
        caller[arch.pc] = _return_address(row, caller, regs, arch)
    except StepFailed as why:
        why.cfa = cfa  # the outermost frame still has a known CFA
        raise
    return caller, cfa


def _rule_value(kind: str, arg: Any, cfa: int, reg: Any, run: Any, memory: AddressSpace,
                regs: dict[str, int], name: str) -> int | None:
    if kind == "offset":
        return memory.ptr(cfa + arg)
    if kind == "val_offset":
        return cfa + arg
    if kind == "register":
        return reg(arg)
    if kind == "same":
        return regs.get(name)
    if kind == "expression":
        return memory.ptr(run(arg, (cfa,)))
    if kind == "val_expression":
        return run(arg, (cfa,))
    return None  # undefined


def _return_address(row: Row, caller: dict[str, int], regs: dict[str, int], arch: Arch) -> int:
    ra_name = arch.dwarf_regs.get(row.ra_column, "")
    rule = row.rules.get(row.ra_column)
    if rule is not None and rule.kind == "undefined":
        raise StepFailed("end of stack (return address undefined)")
    value = caller.get(ra_name) if rule is not None else regs.get(ra_name)
    if value is None:
        raise StepFailed("end of stack (no return address)")
    if arch.name == "sparc64":
        return value + 8   # %o7 holds the call's address; it returns past the delay slot
    return value
