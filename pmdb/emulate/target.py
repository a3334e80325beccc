"""EmulatedTarget: a stopped emulated CPU seen as a pmdb Target.

Its memory is the emulation's DemandPager (the dump plus what the code wrote),
its symbols and types are the dump's, and its OS model has one thread whose
registers are read from the engine each time, so ``$r``, ``$c``, ``::dis`` and
``/K`` show the CPU as it is now. ``parent`` is the dump target to return to.
"""

from __future__ import annotations

from collections.abc import Sequence

from pmdb.emulate.call import Emulation
from pmdb.target import Target
from pmdb.threads import Mapping, Thread
from pmdb.unwind.frame import Frame


class EmulatedOS:
    """One thread (the CPU); mappings are the parent's; stacks unwind over the pager."""

    name = "emulated"

    def __init__(self, emulation: Emulation, max_frames: int = 512) -> None:
        self.emulation = emulation
        self.max_frames = max_frames

    @property
    def parent(self) -> Target:
        return self.emulation.parent

    def thread(self) -> Thread:
        regs = self.emulation.engine.registers()
        return Thread(id=1, registers=regs, name=f"emulated {self.emulation.name}", index=1)

    def threads(self) -> Sequence[Thread]:
        return [self.thread()]

    def stack(self, thread: Thread) -> list[Frame]:
        arch = self.parent.arch
        regs = thread.registers
        objects = getattr(self.parent.os, "objects", None)
        if objects is not None:
            from pmdb.unwind.user import unwind_user

            frames = unwind_user(regs, arch=arch, memory=self.emulation.engine.pager, objects=objects,
                                 max_frames=self.max_frames)
            return self._cut_at_sentinel(frames)
        unwinder = getattr(self.parent.os, "unwinder", None)   # a kernel: its ORC unwinder
        if unwinder is not None:
            from pmdb.emulate.kernel import unwind_emulated

            return self._cut_at_sentinel(unwind_emulated(unwinder, self.emulation.engine, regs))
        return [Frame(0, regs.get(arch.pc, 0), regs.get(arch.sp, 0), regs=dict(regs), method="regs",
                      note="no unwinder for this target")]

    def _cut_at_sentinel(self, frames: list[Frame]) -> list[Frame]:
        """The caller of the emulated function is the sentinel: end the stack there."""
        sentinel = self.emulation.sentinel
        for i, f in enumerate(frames):
            if f.pc == sentinel and i > 0:
                frames[i - 1].note = "end of stack (called by ::emulate)"
                return frames[:i]
        return frames

    def status(self) -> list[tuple[str, str]]:
        em = self.emulation
        last = em.stops[-1].describe() if em.stops else "not started"
        return [("target", f"emulated CPU over {self.parent.path}"),
                ("function", em.name),
                ("state", last),
                ("instructions", str(em.executed) if em.counted else "not counted (untraced)"),
                ("pages paged in", str(len(em.engine.pager.paged_in)))]

    def mappings(self) -> Sequence[Mapping]:
        return self.parent.os.mappings()


class EmulatedTarget(Target):
    """See the module docstring."""

    def __init__(self, emulation: Emulation) -> None:
        parent = emulation.parent
        super().__init__(path=parent.path, arch=parent.arch, memory=emulation.engine.pager,
                         symbols=parent.symbols, types=parent.types,
                         os=EmulatedOS(emulation), kind="emulated")
        self.emulation = emulation
        self.parent = parent

    @property
    def current_thread(self) -> Thread | None:
        # fresh each time: the registers change with every step
        assert isinstance(self.os, EmulatedOS)
        return self.os.thread()

    def set_current_thread(self, ident: int) -> Thread:
        return self.thread_by_id(ident)

    def registers(self, thread: Thread | None = None) -> dict[str, int]:
        return self.emulation.engine.registers()

    def stack(self, thread: Thread | None = None) -> list[Frame]:
        return self.os.stack(thread or self.os.threads()[0])

    def root(self) -> Target:
        """The dump under any number of emulations."""
        t: Target = self.parent
        while isinstance(t, EmulatedTarget):
            t = t.parent
        return t

    def close(self) -> None:
        # the parent stays open: the session returns to it
        return None
