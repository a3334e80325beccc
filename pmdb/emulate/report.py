"""What ::emulate prints after a run: how it stopped, the pages it paged in, the writes the
code made, the result registers, and last the ``return: 0xVALUE`` line scripts rely on."""

from __future__ import annotations

from collections.abc import Callable

from pmdb.emulate.call import Emulation
from pmdb.emulate.engine import Stop

# the registers a result may occupy (a second one for two-word results)
RESULT_REGS = {"x86_64": ("rax", "rdx"), "i386": ("eax", "edx"), "sparc64": ("o0", "o1")}


def stop_line(em: Emulation, stop: Stop) -> str:
    counted = f" after {em.executed} instructions" if em.counted and em.stops else ""
    if stop.reason == "return":
        return f"stop: {em.name} returned{counted}"
    return f"stop: {stop.describe()}{'' if stop.reason == 'budget' else counted}"


def summary(em: Emulation, emit: Callable[[str], None], max_writes: int) -> None:
    """Pages, writes and result registers (not the return line)."""
    pager = em.engine.pager
    pages = " ".join(f"{p:#x}" for p in pager.paged_in)
    emit(f"paged in: {len(pager.paged_in)} page{'s' if len(pager.paged_in) != 1 else ''}"
         + (f": {pages}" if pages else ""))
    if pager.allocated:
        emit(f"zero pages made up (not in the dump): {len(pager.allocated)}")
    _writes(em, emit, max_writes)
    for note in getattr(em.engine, "notes", ()):   # what an engine passed over (a kernel WARN)
        emit(f"note: {note}")
    arch = em.engine.arch
    for reg in RESULT_REGS.get(arch.name, (arch.retval,)):
        emit(f"{reg}: {em.engine.reg(reg):#x}")


def _writes(em: Emulation, emit: Callable[[str], None], max_writes: int) -> None:
    """One line per address written, in order of first write: the last value and how often."""
    writes = em.engine.pager.writes
    if not writes:
        emit("writes: none")
        return
    by_addr: dict[int, tuple[bytes, int]] = {}
    for addr, data in writes:
        prev = by_addr.get(addr)
        by_addr[addr] = (data, (prev[1] if prev else 0) + 1)
    emit(f"writes: {len(writes)} to {len(by_addr)} address{'es' if len(by_addr) != 1 else ''}")
    order = em.engine.arch.byteorder
    symbols = em.parent.symbols
    for addr, (data, times) in list(by_addr.items())[:max_writes]:
        where = symbols.describe(addr)
        where = f" {where}" if where and not where.startswith("0x") else ""
        again = f" ({times} writes)" if times > 1 else ""
        emit(f"  {addr:#x}{where} [{len(data)}] = {_shown(data, order)}{again}")
    if len(by_addr) > max_writes:
        emit(f"  ... {len(by_addr) - max_writes} more addresses")


def _shown(data: bytes, order: str) -> str:
    """A word as a number; a block (a SPARC window spill) as its first bytes."""
    if len(data) <= 8:
        return f"{int.from_bytes(data, 'big' if order == 'big' else 'little'):#x}"
    return data[:16].hex(" ", 8) + (" ..." if len(data) > 16 else "")


def return_line(em: Emulation) -> str:
    return f"return: {em.result():#x}"
