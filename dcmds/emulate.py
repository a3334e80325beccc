"""::emulate and the commands that drive a stopped emulated CPU (:c, ::step, ::bp, ::target).

``FUNC::emulate [-t] [-F] [-s] [-f file.toml] [-r reg=value]... [-P where=value:size]... [arg ...]``
calls FUNC on an emulated CPU whose memory is the dump, paged in on demand, and
ends with ``return: 0xVALUE``. The words are parsed here, by the session's own
option parser (pmdb.commands.args), so that the usage line names FUNC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import number, parse_options
from pmdb.emulate import options as emu_options
from pmdb.emulate.call import Emulation, prepare
from pmdb.emulate.engine import Stop, TraceEvent
from pmdb.emulate.params import FunctionParams
from pmdb.emulate.report import return_line, stop_line, summary
from pmdb.errors import CommandError
from pmdb.target import Target

USAGE = ("[-t] [-F] [-s] [-f file.toml] [-r reg=value]... [-P where=value:size]... "
         "[-b addr]... [-n budget] [arg ...]")
_OPTS = {"t": "trace", "F": "flow", "s": "stop", "f::": "files", "r::": "registers",
         "P::": "patches", "b::": "breakpoints", "n:": "budget"}


@dataclass
class _SessionState:
    """Per-session emulation state: the last emulated target, breakpoints set before a run,
    and each target's function parameters (looked up once)."""

    emulated: Target | None = None
    breakpoints: set[int] = field(default_factory=set)
    params: dict[Target, FunctionParams] = field(default_factory=dict)

    def params_of(self, target: Target) -> FunctionParams:
        if target not in self.params:
            self.params[target] = FunctionParams(target)
        return self.params[target]


def _state(ctx: Context) -> _SessionState:
    return ctx.store("emulate", _SessionState)


# -- ::emulate --------------------------------------------------------------------------------

@dcmd("emulate", addr="optional", usage=USAGE,
      synopsis="call a function of the dump on an emulated CPU",
      example="lookup::emulate -P tunable=1:8 g_table 0t64 0t178")
def emulate(ctx: Context, *words: Any) -> None:
    """Run FUNC(args) on an emulated CPU over the dump's memory (copy-on-write, paged in on
    demand). -t traces every instruction, -F shows calls and returns, -s stops at a
    breakpoint (or at entry) and makes the CPU the current target; -r sets a register,
    -P patches memory as pages come in, -b sets a breakpoint, -n the instruction budget,
    -f reads options from a TOML file. Ends with 'return: 0xVALUE'."""
    flags, layer = _parse_words(ctx, words)
    target = ctx.target
    opts = emu_options.merge(emu_options.config_table(ctx.config), *layer)
    if ctx.addr is not None:
        opts["function"] = ctx.addr
    state = _state(ctx)
    opts["breakpoints"] = list(opts["breakpoints"]) + sorted(state.breakpoints)
    em = prepare(target, opts, ctx.value, state.params_of(target))
    trace_on = flags["trace"] or opts["trace"]
    flow_on = flags["flow"] or opts["flow"]
    if flags["stop"] and not em.breakpoints:
        _become(ctx, em, Stop("breakpoint", em.func, 0, "at entry"))
        ctx.out.line(f"stopped at entry of {em.name}: the emulated CPU is the current target")
        return
    tracer = _tracer(ctx, em, trace_on, flow_on)
    stop = em.account(em.engine.run(sentinel=em.sentinel, budget=em.budget,
                                    breakpoints=frozenset(em.breakpoints), trace=tracer))
    _finish(ctx, em, stop, stay=flags["stop"], max_writes=opts["max_writes"])


def _parse_words(ctx: Context, words: tuple[Any, ...]) -> tuple[dict[str, bool], list[dict[str, Any]]]:
    """The flags, then option layers: each -f file in order, then the options on the line."""
    args, given = parse_options("emulate", _OPTS, words, f"FUNC::emulate {USAGE}")
    flags = {name: bool(given.get(name)) for name in ("trace", "flow", "stop")}
    files = [emu_options.load_file(str(path)) for path in given.get("files", [])]
    inline: dict[str, Any] = {
        "registers": dict(_register_flag(str(r)) for r in given.get("registers", [])),
        "patches": [_patch_flag(str(p)) for p in given.get("patches", [])],
        "breakpoints": [b if isinstance(b, int) else str(b) for b in given.get("breakpoints", [])],
        "args": args,
    }
    if "budget" in given:
        inline["budget"] = _literal(given["budget"], "-n")
    layer = {k: v for k, v in inline.items() if v or k == "budget"}
    return flags, [*files, emu_options.check(layer, "::emulate")]


def _register_flag(text: str) -> tuple[str, str]:
    name, sep, val = text.partition("=")
    if not sep or not name or not val:
        raise CommandError(f"emulate: -r wants reg=value, not '{text}'")
    return name, val


def _patch_flag(text: str) -> dict[str, Any]:
    where, sep, rest = text.partition("=")
    value, sep2, size = rest.rpartition(":")
    if not sep or not sep2 or not where or not value:
        raise CommandError(f"emulate: -P wants where=value:size, not '{text}'")
    nbytes = number(size, radix=10)
    if nbytes is None:
        raise CommandError(f"emulate: -P size must be 1, 2, 4 or 8, not '{size}'")
    return {"where": where, "value": value, "size": nbytes}


def _literal(value: Any, what: str) -> int:
    literal = value if isinstance(value, int) else number(str(value))
    if literal is None:
        raise CommandError(f"emulate: {what} wants a number, not '{value}'")
    return literal


def _tracer(ctx: Context, em: Emulation, trace_on: bool, flow_on: bool) -> Any:
    from pmdb.emulate.flow import FlowTracer
    from pmdb.emulate.trace import TraceFormatter

    parts: list[Any] = []
    if trace_on:
        parts.append(TraceFormatter(em.parent, ctx.out.line))
    if flow_on:
        flow = FlowTracer(em.parent, em.engine, ctx.out.line, em.params)
        flow.start(em.engine.pc)
        parts.append(flow)
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]

    def both(ev: TraceEvent) -> None:
        for p in parts:
            p(ev)

    return both


def _finish(ctx: Context, em: Emulation, stop: Stop, *, stay: bool, max_writes: int) -> None:
    """Report a run; a stop that is not a return is one error line (or, with -s, a target)."""
    if stop.reason in ("fault", "budget", "unimplemented") and not stay:
        raise CommandError(stop.describe())
    ctx.out.line(stop_line(em, stop))
    if stop.reason == "return":
        summary(em, ctx.out.line, max_writes)
        ctx.out.line(return_line(em))
        return
    if stay or stop.reason in ("breakpoint", "step"):
        _become(ctx, em, stop)
        ctx.out.line("the emulated CPU is the current target (::target dump returns)")
        return
    raise CommandError(stop.describe())


def _become(ctx: Context, em: Emulation, stop: Stop) -> None:
    from pmdb.emulate.target import EmulatedTarget

    if not em.stops:
        em.stops.append(stop)
    target = EmulatedTarget(em)
    ctx.set_target(target)
    _state(ctx).emulated = target
    ctx.set_dot(em.engine.pc)


# -- driving a stopped CPU ----------------------------------------------------------------------

def _emulated(ctx: Context) -> Emulation:
    from pmdb.emulate.target import EmulatedTarget

    t = ctx.target if ctx.has_target else None
    if not isinstance(t, EmulatedTarget):
        raise CommandError("the current target is not an emulated CPU (FUNC::emulate -s makes one)")
    em = t.emulation
    if em.stops and em.stops[-1].reason == "return":
        raise CommandError(f"{em.name} has returned; FUNC::emulate starts a new call")
    return em


@dcmd("cont", addr="none", aliases=("c", ":c"), synopsis="continue the emulated CPU",
      usage="", example="::cont")
def cont(ctx: Context) -> None:
    """Run the emulated CPU on until its function returns, a breakpoint, or the budget."""
    em = _emulated(ctx)
    stop = em.account(em.engine.run(sentinel=em.sentinel, budget=max(em.remaining, 1),
                                    breakpoints=frozenset(em.breakpoints)))
    ctx.set_dot(em.engine.pc)
    _report_continue(ctx, em, stop)


def _report_continue(ctx: Context, em: Emulation, stop: Stop) -> None:
    ctx.out.line(stop_line(em, stop))
    if stop.reason == "return":
        summary(em, ctx.out.line, 20)
        ctx.out.line(return_line(em))
    elif stop.reason not in ("breakpoint", "step"):
        raise CommandError(stop.describe())


@dcmd("step", addr="none", synopsis="execute one instruction of the emulated CPU",
      usage="[over|out]", example="::step over")
def step(ctx: Context, how: str = "") -> None:
    """One instruction (printed as -t prints it); 'over' runs a call to its return, 'out'
    runs to the return address of the current function."""
    em = _emulated(ctx)
    from pmdb.emulate.trace import TraceFormatter

    if how not in ("", "over", "out"):
        raise CommandError(f"step: '{how}' is not 'over' or 'out'")
    until = _step_target(ctx, em, how)
    if until is None:
        stop = em.account(em.engine.step(trace=TraceFormatter(em.parent, ctx.out.line)))
    else:
        bps = frozenset(em.breakpoints | {until})
        stop = em.account(em.engine.run(sentinel=em.sentinel, budget=max(em.remaining, 1),
                                        breakpoints=bps))
        if stop.reason == "breakpoint" and stop.pc == until and until not in em.breakpoints:
            stop = Stop("step", stop.pc, stop.instructions)
    ctx.set_dot(em.engine.pc)
    _report_continue(ctx, em, stop)


def _step_target(ctx: Context, em: Emulation, how: str) -> int | None:
    """Where 'over' / 'out' stop; None for a plain single step."""
    if how == "out":
        frames = ctx.target.stack()
        return frames[1].pc if len(frames) > 1 else em.sentinel
    if how == "over":
        from pmdb.disasm import disassembler_for

        insn = disassembler_for(ctx.target).decode(em.engine.pc)
        if insn.mnemonic.startswith("call") or insn.mnemonic == "jmpl":
            # SPARC returns past the delay slot
            return insn.address + (8 if em.engine.arch.name.startswith("sparc") else insn.size)
    return None


@dcmd("bp", addr="optional", synopsis="set, list or delete emulator breakpoints",
      usage="[-d]", opts={"d": "delete"}, example="lookup+0x30::bp")
def bp(ctx: Context, delete: bool = False) -> None:
    """addr::bp stops the emulated CPU before it executes addr (on the current emulated CPU,
    or on the next ::emulate); addr::bp -d deletes; ::bp lists."""
    from pmdb.emulate.target import EmulatedTarget

    t = ctx.target if ctx.has_target else None
    bps = t.emulation.breakpoints if isinstance(t, EmulatedTarget) else _state(ctx).breakpoints
    if ctx.addr is None:
        for a in sorted(bps):
            ctx.out.line(f"{a:#x} {ctx.target.symbols.describe(a)}")
        return
    if delete:
        if ctx.addr not in bps:
            raise CommandError(f"no breakpoint at {ctx.addr:#x}")
        bps.discard(ctx.addr)
    else:
        bps.add(ctx.addr)


@dcmd("target", addr="none", synopsis="switch between the dump and the emulated CPU",
      usage="[dump|emulated]", example="::target dump")
def target_cmd(ctx: Context, which: str = "") -> None:
    """Without an argument, say which target is current; 'dump' returns to the dump,
    'emulated' to the last emulated CPU."""
    from pmdb.emulate.target import EmulatedTarget

    t = ctx.target
    if which == "":
        ctx.out.line(f"{t.kind} {t.path}")
    elif which == "dump":
        ctx.set_target(t.root() if isinstance(t, EmulatedTarget) else t)
    elif which == "emulated":
        last = _state(ctx).emulated
        if last is None:
            raise CommandError("no emulated CPU yet (FUNC::emulate -s makes one)")
        ctx.set_target(last)
    else:
        raise CommandError(f"target: '{which}' is not 'dump' or 'emulated'")
