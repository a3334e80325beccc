"""SPARC V9 register windows: 8 windows in software, spilled and filled like Linux does.

The current window lives in the flat list ``r`` (slots 8-31: outs, locals, ins),
because every decoded closure indexes that list directly; the other windows live
in ``locals``/``ins`` (the outs of window w are the ins of window w+1). ``save``
and ``restore`` copy 24 slots between the two, which is cheap next to keeping
window-relative indices in every instruction.

When a ``save`` finds no free window (CANSAVE = 0), the oldest valid window is
spilled to its own stack frame (``%sp+2047``, 16 x 8 bytes: l0-l7, i0-i7; a 32-bit
frame, even %sp, gets 16 x 4 bytes at %sp), as the kernel's spill trap handler
does; a ``restore`` with nothing to restore (CANRESTORE = 0) fills the caller's
window back from ``%i6+2047``. OTHERWIN stays 0 (one address space).
"""

from __future__ import annotations

import struct

from pmdb.emulate.pager import DemandPager
from pmdb.emulate.sparc64_ops import M64, NSLOTS, W32, GuestTrap
from pmdb.errors import FaultError

NWINDOWS = 8
STACK_BIAS = 2047
_FRAME64 = struct.Struct(">16Q")
_FRAME32 = struct.Struct(">16I")


class RegisterFile:
    """Windows, CWP and the window counters; see the module docstring."""

    def __init__(self, pager: DemandPager) -> None:
        self.r = [0] * NSLOTS
        self.locals = [[0] * 8 for _ in range(NWINDOWS)]
        self.ins = [[0] * 8 for _ in range(NWINDOWS)]
        self.cwp = 0
        self.cansave = NWINDOWS - 2
        self.canrestore = 0
        self.otherwin = 0
        self.cleanwin = NWINDOWS - 1
        self.pager = pager
        self.spills: list[int] = []   # stack addresses written by spills, in order
        self.fills: list[int] = []    # stack addresses read by fills

    # -- the current window <-> the window file ----------------------------------------

    def _store_view(self) -> None:
        r, c = self.r, self.cwp
        self.ins[(c + 1) % NWINDOWS][:] = r[8:16]
        self.locals[c][:] = r[16:24]
        self.ins[c][:] = r[24:32]

    def _load_view(self) -> None:
        r, c = self.r, self.cwp
        r[8:16] = self.ins[(c + 1) % NWINDOWS]
        r[16:24] = self.locals[c]
        r[24:32] = self.ins[c]

    # -- instructions ---------------------------------------------------------------------

    def save(self) -> None:
        """Move to a new window; its ins are the old outs."""
        self._store_view()
        if self.cansave == 0:
            self._spill((self.cwp + 2) % NWINDOWS)
            self.cansave += 1
            self.canrestore -= 1
        self.cwp = (self.cwp + 1) % NWINDOWS
        self.cansave -= 1
        self.canrestore += 1
        self._load_view()

    def restore(self) -> None:
        """Back to the caller's window, filling it from its stack frame if it was spilled."""
        self._store_view()
        if self.canrestore == 0:
            self._fill((self.cwp - 1) % NWINDOWS)
            self.canrestore += 1
            self.cansave -= 1
        self.cwp = (self.cwp - 1) % NWINDOWS
        self.cansave += 1
        self.canrestore -= 1
        self._load_view()

    def flushw(self) -> None:
        """Spill every valid window but the current one, oldest first."""
        self._store_view()
        while self.canrestore:
            self._spill((self.cwp - self.canrestore) % NWINDOWS)
            self.canrestore -= 1
            self.cansave += 1

    # -- spill and fill -------------------------------------------------------------------

    def _frame(self, w: int, what: str) -> tuple[int, bool]:
        """Where window w's registers go: (address, 64-bit frame?) from its %sp."""
        sp = self.ins[(w + 1) % NWINDOWS][6]
        if sp & 1:
            addr = (sp + STACK_BIAS) & M64
            align = 7
        else:
            addr, align = sp & W32, 3
        if addr & align:
            raise GuestTrap("fault", f"window {what} at misaligned stack address {addr:#x} "
                                     f"(%sp {sp:#x})")
        return addr, bool(sp & 1)

    def _spill(self, w: int) -> None:
        addr, wide = self._frame(w, "spill")
        values = self.locals[w] + self.ins[w]
        data = _FRAME64.pack(*values) if wide else _FRAME32.pack(*(v & W32 for v in values))
        try:
            self.pager.write(addr, data)
        except FaultError as err:
            raise GuestTrap("fault", f"window spill to {addr:#x}: {err}") from None
        self.spills.append(addr)

    def _fill(self, w: int) -> None:
        addr, wide = self._frame(w, "fill")
        fmt = _FRAME64 if wide else _FRAME32
        try:
            values = fmt.unpack(self.pager.read(addr, fmt.size))
        except FaultError as err:
            raise GuestTrap("fault", f"window fill from {addr:#x}: {err}") from None
        self.locals[w][:] = values[:8]
        self.ins[w][:] = values[8:]
        self.fills.append(addr)

    # -- state for reg()/set_reg() ---------------------------------------------------------

    def counters(self) -> dict[str, int]:
        return {"cwp": self.cwp, "cansave": self.cansave, "canrestore": self.canrestore,
                "otherwin": self.otherwin, "cleanwin": self.cleanwin}
