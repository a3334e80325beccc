"""The ``-F`` view: calls and returns, indented by depth, like DTrace's flowindent.

    -> lookup(table=0x10e012a0, nbuckets=0x40, key=0x360)
      -> __umoddi3(...)
      <- __umoddi3 = 0x3e
    <- lookup = 0x10e02410

A call's arguments are read once the call has taken effect: right after the
call instruction on x86, after its delay slot on SPARC (where the delay slot
often sets the last argument). Returns are reported the same way, so a SPARC
``ret; restore %g0, 1, %o0`` shows the value the caller sees. Parameter names
and sizes come from DWARF; a function without it shows ``(...)``.
"""

from __future__ import annotations

from collections.abc import Callable

from pmdb.disasm import disassembler_for
from pmdb.emulate.engine import Engine, TraceEvent
from pmdb.emulate.params import FuncInfo, FunctionParams
from pmdb.errors import PmdbError
from pmdb.target import Target

_RETURNS = {"ret", "retn", "retl", "return", "retq", "rett",  # capstone calls V9 "return" "rett"
            "retaa", "retab"}                                # AArch64 with pointer authentication
_ARM64_CALLS = {"bl", "blr", "blraa", "blraaz", "blrab", "blrabz"}


class FlowTracer:
    """A trace callback that emits the flow lines; see the module docstring."""

    def __init__(self, target: Target, engine: Engine, emit: Callable[[str], None],
                 params: FunctionParams) -> None:
        self.target = target
        self.params = params
        self.engine = engine
        self.emit = emit
        self.arch = target.arch
        self.dis = disassembler_for(target)
        self.delay_slots = self.arch.name.startswith("sparc")
        self.names: list[tuple[str, FuncInfo | None]] = []
        self._delayed: str | None = None          # "call"/"ret" waiting for its delay slot
        self._entry: list[tuple[int, int]] | None = None   # argument snapshot awaiting the callee's pc
        self._kind: dict[int, str] = {}

    def start(self, pc: int) -> None:
        """The function the emulation starts in, with its arguments as set up."""
        self._enter(pc, self._snapshot(pc, entry=True))

    def __call__(self, ev: TraceEvent) -> None:
        if self._entry is not None:
            snap, self._entry = self._entry, None
            self._enter(ev.pc, snap)
        if self._delayed is not None:
            what, self._delayed = self._delayed, None
            self._effect(what, ev.pc)
        kind = self._classify(ev)
        if kind:
            if self.delay_slots:
                self._delayed = kind
            else:
                self._effect(kind, ev.pc)

    # -- events ------------------------------------------------------------------------

    def _effect(self, kind: str, pc: int) -> None:
        if kind == "call":
            self._entry = self._snapshot(None, entry=False)
        else:
            self._leave()

    def _enter(self, pc: int, snap: list[tuple[int, int]]) -> None:
        name = self._name(pc)
        info = self.params(pc)
        if info is None:
            args = "..."
        else:
            values = self._arg_values(info, snap)
            args = ", ".join(f"{n}={v:#x}" for (n, _), v in zip(info.params, values, strict=False))
        self.emit(f"{'  ' * len(self.names)}-> {name}({args})")
        self.names.append((name, info))

    def _leave(self) -> None:
        name, info = self.names.pop() if self.names else ("?", None)
        indent = "  " * len(self.names)
        if info is not None and info.ret_size == 0:
            self.emit(f"{indent}<- {name}")
            return
        self.emit(f"{indent}<- {name} = {self._result(info):#x}")

    # -- machine details -----------------------------------------------------------------

    def _classify(self, ev: TraceEvent) -> str:
        kind = self._kind.get(ev.pc)
        if kind is None:
            kind = self._kind[ev.pc] = self._decode_kind(ev.pc)
        return kind

    def _decode_kind(self, pc: int) -> str:
        try:
            insn = self.dis.decode(pc)
        except PmdbError:
            return ""
        m = insn.mnemonic
        if m.startswith("call") or (m == "jmpl" and insn.op_str.endswith("%o7")) or m in _ARM64_CALLS:
            return "call"
        if m in _RETURNS:
            return "ret"
        return ""

    def _snapshot(self, pc: int | None, entry: bool) -> list[tuple[int, int]]:
        """Argument words where the callee will find them: (register index or stack slot, value)."""
        if self.arch.args:
            return [(i, self.engine.reg(r)) for i, r in enumerate(self.arch.args)]
        # i386: words above the return address
        sp = self.engine.reg(self.arch.sp)
        words = []
        for i in range(16):
            try:
                words.append((i, self.engine.pager.u32(sp + 4 + 4 * i)))
            except PmdbError:
                break
        return words

    def _arg_values(self, info: FuncInfo, snap: list[tuple[int, int]]) -> list[int]:
        words = [v for _, v in snap]
        if self.arch.args:
            return words[:len(info.params)]
        out, pos = [], 0
        for _, size in info.params:
            n = max(1, (size + 3) // 4)
            chunk = words[pos:pos + n]
            out.append(sum(w << (32 * k) for k, w in enumerate(chunk)))
            pos += n
        return out

    def _result(self, info: FuncInfo | None) -> int:
        value = self.engine.reg(self.arch.retval)
        if self.arch.name == "i386" and info is not None and info.ret_size == 8:
            value |= self.engine.reg("edx") << 32
        return value

    def _name(self, pc: int) -> str:
        hit = self.target.symbols.resolve(pc)
        if hit is not None and hit[1] == 0:
            return hit[0].name
        return self.target.symbols.describe(pc)
