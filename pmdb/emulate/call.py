"""Setting up a call in an emulated CPU: engine, patches, registers, stack, arguments, sentinel.

The calling conventions are data here: x86-64 SysV passes integer arguments in
rdi..r9; i386 cdecl on the stack, a 64-bit parameter (by its DWARF type) in two
words, low first; SPARC V9 in %o0..%o5, returning to %o7+8, with %sp biased by
2047. Every convention gets a return address that is the sentinel, so the run
stops when the function returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pmdb.emulate.engine import Engine, Stop
from pmdb.emulate.pager import DemandPager, Patch
from pmdb.emulate.params import FuncInfo, FunctionParams
from pmdb.errors import CommandError, PmdbError
from pmdb.target import Target

Evaluate = Callable[[int | str], int]
_SENTINELS = (0xDEAD0000, 0x5E5E0000, 0xFEED0000)
SPARC_MIN_FRAME = 176          # register save area + hidden args the V9 ABI keeps above %sp+2047


@dataclass
class Emulation:
    """One emulated call: what was set up and how far it has run."""

    parent: Target
    engine: Engine
    sentinel: int | None
    budget: int
    breakpoints: set[int]
    func: int
    name: str
    info: FuncInfo | None
    params: FunctionParams         # what the flow view names arguments by
    stops: list[Stop] = field(default_factory=list)
    executed: int = 0              # instructions so far, when every run was counted
    counted: bool = True           # False once an engine run did not count (untraced unicorn)

    @property
    def remaining(self) -> int:
        return max(self.budget - self.executed, 0)

    def account(self, stop: Stop) -> Stop:
        self.stops.append(stop)
        if stop.instructions < 0:
            self.counted = False
        else:
            self.executed += stop.instructions
        return stop

    def result(self) -> int:
        """The function's value as the caller sees it (i386 64-bit results in edx:eax)."""
        arch = self.engine.arch
        value = self.engine.reg(arch.retval)
        if arch.name == "i386" and self.info is not None and self.info.ret_size == 8:
            value |= self.engine.reg("edx") << 32
        return value


def make_engine(target: Target, patches: list[Patch]) -> Engine:
    """The engine for the target's CPU over a fresh pager."""
    arch = target.arch
    pager = DemandPager(target.memory, arch.page_size, patches, arch.byteorder, arch.ptr_size)
    if arch.name == "x86_64" and _is_kernel(target):
        from pmdb.emulate.kernel import kernel_engine

        return kernel_engine(target, pager)
    if arch.name in ("x86_64", "i386"):
        from pmdb.emulate.unicorn_x86 import UnicornX86

        return UnicornX86(arch, pager)
    if arch.name == "aarch64":
        if _is_kernel(target):
            from pmdb.emulate.kernel_arm64 import kernel_engine as arm64_kernel_engine

            return arm64_kernel_engine(target, pager)
        from pmdb.emulate.unicorn_arm64 import UnicornArm64

        return UnicornArm64(arch, pager)
    if arch.name == "sparc64":
        return _sparc_engine(arch, pager)
    raise CommandError(f"::emulate has no engine for {arch.name}")


def _sparc_engine(arch: Any, pager: DemandPager) -> Engine:
    from pmdb.emulate import sparc64  # written separately; imported only when needed

    factory = getattr(sparc64, "make_engine", None)
    if factory is not None:
        return factory(arch, pager)
    for obj in vars(sparc64).values():
        if isinstance(obj, type) and issubclass(obj, Engine) and obj is not Engine:
            engine_class: Any = obj
            return engine_class(arch, pager)
    raise CommandError("the SPARC engine is not available")


def resolve_patches(target: Target, specs: list[dict[str, Any]], evaluate: Evaluate) -> list[Patch]:
    """Patches as bytes at addresses; each must lie inside memory the dump has."""
    out = []
    order = target.arch.byteorder
    for spec in specs:
        addr = evaluate(spec["where"])
        if "bytes" in spec:
            data = spec["bytes"]
        else:
            size = spec["size"]
            data = (evaluate(spec["value"]) & ((1 << (8 * size)) - 1)).to_bytes(size, order)
        if not data:
            raise CommandError(f"patch at {addr:#x}: no bytes")
        if not target.memory.readable(addr, len(data)):
            raise CommandError(f"patch at {addr:#x} ({len(data)} bytes) is outside any mapping of the dump")
        out.append(Patch(addr, data))
    return out


def prepare(target: Target, opts: dict[str, Any], evaluate: Evaluate,
            params: FunctionParams | None = None) -> Emulation:
    """An Emulation ready to run, from merged options (see pmdb.emulate.options); params
    caches the target's function parameters between calls (a fresh one when None)."""
    params = params if params is not None else FunctionParams(target)
    patches = resolve_patches(target, opts["patches"], evaluate)
    engine = make_engine(target, patches)
    kernel = None
    if _is_kernel(target):
        from pmdb.emulate.kernel import KernelCall

        kernel = KernelCall.choose(target, opts)
    thread = kernel.thread if kernel is not None else _thread(target, opts)
    if opts["inherit_registers"] and thread is not None:
        _inherit(engine, thread.registers)
    if kernel is not None:
        kernel.enter(engine)
    if opts["thread_pointer"] is not None:
        engine.set_reg(_thread_pointer(target), evaluate(opts["thread_pointer"]))
    func_expr = opts["pc"] if opts["pc"] is not None else opts["function"]
    if func_expr is None:
        raise CommandError("::emulate: no function (FUNC::emulate, or function/pc in the options)")
    func = evaluate(func_expr)
    sentinel = _sentinel(target, engine)
    args = [evaluate(a) for a in opts["args"]]
    info = params(func) if opts["pc"] is None else None
    if kernel is not None and opts["stack"] is None:
        sp = kernel.stack_top(target, engine, opts)
    else:
        sp = _stack(target, engine, opts, thread, evaluate)
    if opts["pc"] is None:
        _place_call(target, engine, func, args, info, sp, sentinel)
    else:
        engine.set_reg(target.arch.sp, sp - target.arch.stack_bias)
        engine.set_reg(target.arch.pc, func)
        if target.arch.name.startswith("sparc"):
            npc = opts["npc"]
            engine.set_reg("npc", evaluate(npc) if npc is not None else func + 4)
    for name, value in opts["registers"].items():
        engine.set_reg(name, evaluate(value))
    if hasattr(engine, "record_writes"):
        engine.record_writes = True
    stop_sentinel = sentinel if opts["stop_at_return"] else None
    bps = {evaluate(b) for b in opts["breakpoints"]}
    return Emulation(target, engine, stop_sentinel, opts["budget"], bps, func,
                     _name(target, func), info, params)


def _thread(target: Target, opts: dict[str, Any]) -> Any:
    if opts["thread"] is not None:
        return target.thread_by_id(opts["thread"])
    return target.current_thread


def _inherit(engine: Engine, regs: dict[str, int]) -> None:
    """The thread's registers, skipping what this CPU model does not hold (e.g. tstate)."""
    for name, value in regs.items():
        try:
            engine.set_reg(name, value)
        except PmdbError:
            continue


def _is_kernel(target: Target) -> bool:
    """pmdb.emulate.kernel.is_kernel, imported when asked: that module loads unicorn and
    capstone (~50 ms), which dcmd discovery (this module is imported by the ::emulate dcmd)
    must not pay for on every start."""
    from pmdb.emulate.kernel import is_kernel

    return is_kernel(target)


def _thread_pointer(target: Target) -> str:
    if _is_kernel(target):
        return "tpidr_el1" if target.arch.name == "aarch64" else "gs_base"   # the per-CPU base
    name = {"x86_64": "fs_base", "sparc64": "g7", "aarch64": "tpidr_el0"}.get(target.arch.name)
    if name is None:
        raise CommandError(f"no thread pointer register on {target.arch.name} (set it with -r)")
    return name


def _sentinel(target: Target, engine: Engine) -> int:
    own = getattr(engine, "sentinel", None)
    if isinstance(own, int):
        return own
    for addr in _SENTINELS:
        if not target.memory.readable(addr, 1):
            return addr
    raise CommandError("no free address for the return sentinel")


def _stack(target: Target, engine: Engine, opts: dict[str, Any], thread: Any,
           evaluate: Evaluate) -> int:
    """The (unbiased) stack top to call with; zero pages where the dump has none."""
    arch = target.arch
    if opts["stack"] is not None:
        top = evaluate(opts["stack"])
    elif thread is not None and arch.sp in thread.registers:
        top = thread.registers[arch.sp] + arch.stack_bias - opts["stack_gap"]
    else:
        raise CommandError("no thread to place the stack below: give stack = ADDR")
    top &= ~0xF
    engine.pager.allocate(top - opts["stack_size"], opts["stack_size"] + arch.page_size)
    return top


def _place_call(target: Target, engine: Engine, func: int, args: list[int], info: FuncInfo | None,
                top: int, sentinel: int) -> None:
    arch = target.arch
    pager = engine.pager
    if arch.name == "i386":
        words = _i386_words(args, info)
        base = (top - 4 * len(words)) & ~0xF
        for i, w in enumerate(words):
            pager.poke(base + 4 * i, w.to_bytes(4, "little"))
        pager.poke(base - 4, sentinel.to_bytes(4, "little"))
        engine.set_reg("esp", base - 4)
    elif arch.name == "x86_64":
        _reg_args(engine, arch.args, args)
        pager.poke(top - 8, sentinel.to_bytes(8, "little"))
        engine.set_reg("rsp", top - 8)
    elif arch.name == "aarch64":
        _reg_args(engine, arch.args, args)
        engine.set_reg("x30", sentinel)
        engine.set_reg("sp", top)
    elif arch.name.startswith("sparc"):
        _reg_args(engine, arch.args, args)
        engine.set_reg("o7", sentinel - 8)
        engine.set_reg("o6", top - SPARC_MIN_FRAME - arch.stack_bias)
        engine.set_reg("npc", func + 4)
    else:
        raise CommandError(f"no calling convention for {arch.name}")
    engine.set_reg(arch.pc, func)


def _reg_args(engine: Engine, regs: tuple[str, ...], args: list[int]) -> None:
    if len(args) > len(regs):
        raise CommandError(f"::emulate passes at most {len(regs)} arguments in registers")
    for reg, value in zip(regs, args, strict=False):
        engine.set_reg(reg, value)


def _i386_words(args: list[int], info: FuncInfo | None) -> list[int]:
    """Stack words, low word first for 64-bit parameters (by DWARF size; one word otherwise)."""
    sizes = [s for _, s in info.params] if info is not None else []
    words: list[int] = []
    for i, value in enumerate(args):
        size = sizes[i] if i < len(sizes) else 4
        for k in range(max(1, (size + 3) // 4)):
            words.append((value >> (32 * k)) & 0xFFFFFFFF)
    return words


def _name(target: Target, addr: int) -> str:
    hit = target.symbols.resolve(addr)
    if hit is not None and hit[1] == 0:
        return hit[0].name
    return target.symbols.describe(addr)
