"""Session: one open target, its variables and command registry; runs command lines.

Lines are lexed and parsed into an AST first (pmdb.language), then evaluated
here stage by stage. Errors a user can cause become one line on stderr; the
session always survives to run the next line.
"""

from __future__ import annotations

import inspect
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from pmdb.commands.args import Quoted, parse_options
from pmdb.commands.context import Context, Handoff
from pmdb.commands.registry import DcmdSpec, Registry
from pmdb.config import Config
from pmdb.errors import CommandError, FaultError, LimitError, ParseError, PmdbError, SymbolError, clip
from pmdb.formats import parse_format, run_format
from pmdb.language.ast import (
    AssignVerb,
    DcmdVerb,
    FormatVerb,
    Pipeline,
    Stage,
)
from pmdb.language.evaluate import evaluate
from pmdb.language.parser import parse
from pmdb.output import Output
from pmdb.progress import NoProgress, Progress, command_bar
from pmdb.target import Target

REPORT_PREFIX = "pmdb: "


class QuitRequest(Exception):
    """Raised by $q to end the session."""


class Session:
    # what each pipeline writes through (pmdb.api keeps the rows as Python values instead)
    output_class: Callable[..., Output] = Output

    def __init__(self, target: Target | None = None, *, config: Config | None = None,
                 stdout: IO[str] | None = None, stderr: IO[str] | None = None,
                 json_mode: bool = False) -> None:
        self.target = target
        self.config = config or Config()
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.json_mode = json_mode
        self.registry = Registry()
        self.registry.discover(self.config.get("plugins.paths"))
        for problem in self.registry.load_errors:
            self.stderr.write(f"pmdb: {problem}\n")
        self.variables: dict[str, int] = {}
        self.radix = 16              # how numbers without a prefix read, and %r prints ($d)
        self.dot = 0
        self.next_dot = 0            # where a repeated format command continues
        self.last_format: str = "X"  # what a bare '/' repeats
        self.last_line = ""
        self.failed = False          # any command failed (for the exit status)
        self.extensions: dict[str, Any] = {}  # per-session state of dcmd modules (Context.store)
        self._progress_shown = False  # a bar is on the terminal (see progress)

    # -- environment for the evaluator ------------------------------------------------

    @property
    def ptr_size(self) -> int:
        return self.target.arch.ptr_size if self.target else 8

    def symbol_value(self, name: str, module: str | None) -> int:
        if name in self.variables and module is None and self.target is None:
            return self.variables[name]
        if self.target is None:
            raise SymbolError(f"unknown symbol '{name}' (no target open)")
        sym = self.target.symbols.lookup(name, module)
        if sym is None:
            where = f"{module}`{name}" if module else name
            raise SymbolError(f"unknown symbol '{where}'")
        return sym.addr

    def find_symbol(self, name: str) -> int | None:
        if self.target is None:
            return None
        sym = self.target.symbols.lookup(name, None)
        return sym.addr if sym is not None else None

    def variable(self, name: str) -> int:
        if name in self.variables:
            return self.variables[name]
        if self.target is not None:
            regs = self.target.current_thread.registers if self.target.current_thread else {}
            reg = self.target.arch.reg_name(name)
            if reg in regs:
                return regs[reg]
        raise CommandError(f"unknown variable '{name}'")

    def read_int(self, addr: int, size: int) -> int:
        if self.target is None:
            raise FaultError(addr, size, "no target open")
        return self.target.memory.read_int(addr, size)

    # -- running lines -------------------------------------------------------------

    def run_line(self, text: str, *, out: IO[str] | None = None, remember: bool = True) -> bool:
        """Run one command line; False when any part of it failed (already reported).

        remember=False (a line run by a dcmd, such as ::eval's) leaves what a bare newline
        repeats alone."""
        if not text.strip():
            return True
        if remember:
            self.last_line = text
        try:
            text = self.crash_spelling(text)
            line = parse(text, self.radix)
        except ParseError as err:
            self._report(err.caret(indent=len(REPORT_PREFIX)))
            return False
        except (KeyboardInterrupt, RecursionError, PmdbError, Exception) as err:
            self._report_unexpected(err)     # a lexer or parser bug costs one line, not the session
            return False
        ok = True
        for pipeline, source in zip(line.pipelines, pipeline_sources(text, line.pipelines), strict=True):
            ok = self._run_reporting(pipeline, out, source) and ok
        return ok

    def crash_spelling(self, text: str) -> str:
        """crash's ``ps``, ``sys``, ``struct``... as the dcmds they stand for (see crash_aliases)."""
        from pmdb.language.crash_aliases import rewrite

        return rewrite(text, has_dcmd=self.registry.has_dcmd)

    def repeat_last(self, *, out: IO[str] | None = None) -> bool:
        """A bare newline: repeat the last command (a format continues where it stopped)."""
        if not self.last_line:
            return True
        try:
            line = parse(self.last_line, self.radix)
        except ParseError:
            return False
        pls = line.pipelines
        if len(pls) == 1 and len(pls[0].stages) == 1 and isinstance(pls[0].stages[0].verb, FormatVerb):
            stage = pls[0].stages[0]
            from pmdb.language.ast import Num

            cont = Stage(Num(self.next_dot), stage.count, stage.verb, stage.offset)
            return self._run_reporting(Pipeline((cont,), pls[0].shell), out, self.last_line.strip())
        return self.run_line(self.last_line, out=out)

    def run_script(self, lines: Iterable[str]) -> bool:
        """Run lines of a script (-f, $<, ~/.pmdbrc); a line whose first word starts with
        ``//`` or ``#`` is a comment (mid-line, see pmdb.language.lexer.is_hash_comment)."""
        ok = True
        for text in lines:
            if text.lstrip().startswith(("//", "#")):
                continue
            ok = self.run_line(text.rstrip("\n")) and ok
        return ok

    def _run_reporting(self, pipeline: Pipeline, out: IO[str] | None, source: str = "") -> bool:
        try:
            self.run_pipeline(pipeline, out if out is not None else self.stdout, source)
            return True
        except QuitRequest:
            raise
        except BrokenPipeError:
            return True
        except (KeyboardInterrupt, Exception) as err:
            self._report_unexpected(err)
        return False

    def _report_unexpected(self, err: BaseException) -> None:
        """What stopped a command, as one line: pmdb's own errors as they are, ^C, and a bug as
        ``internal error`` (its traceback only with PMDB_DEBUG set)."""
        if isinstance(err, PmdbError):
            self._report(str(err))
        elif isinstance(err, KeyboardInterrupt):
            self._report("interrupted")
        elif isinstance(err, RecursionError):
            self._report("internal error: recursion too deep (the data may be cyclic)")
        else:
            self._report(f"internal error: {type(err).__name__}: {clip(str(err))}")
            if os.environ.get("PMDB_DEBUG"):
                import traceback

                traceback.print_exception(err, file=self.stderr)

    def _report(self, message: str) -> None:
        self.failed = True
        self.stderr.write(f"{REPORT_PREFIX}{message}\n")
        self.stderr.flush()

    # -- pipelines -------------------------------------------------------------------

    def run_pipeline(self, pipeline: Pipeline, stream: IO[str], source: str = "") -> None:
        """Run the stages; the output is rendered once, at the end (one JSON line with --json,
        carrying the error that stopped the pipeline, if one did). With a shell command, the
        stages' text is its input; what it prints is shown, run as commands (``!<``), or read
        as the addresses of the stages after it (``! 'cmd' | ::map .``)."""
        if pipeline.shell is None:
            self._run_stages(pipeline.stages, None, stream, source)
            return
        captured = io.StringIO()
        if pipeline.stages:
            self._run_stages(pipeline.stages, None, captured, source, color=False)
        text = self._shell(pipeline.shell, captured.getvalue())
        if pipeline.source:
            if not self.run_script(text.splitlines()):
                self.failed = True
        elif pipeline.after:
            from pmdb.language.parser import parse_expr

            inputs = [Handoff(evaluate(parse_expr(ln.strip(), self.radix), self))
                      for ln in text.splitlines() if ln.strip()]
            if inputs:
                self._run_stages(pipeline.after, inputs, stream, source)
        else:
            stream.write(text)

    def _run_stages(self, stages: Sequence[Stage], inputs: list[Handoff] | None, stream: IO[str],
                    source: str, *, color: bool | None = None) -> None:
        out = self.output_class(stream, json_mode=self.json_mode, color=self._color() if color is None else color,
                     command=source, max_lines=self.config.get("limits.max_lines"))
        handoffs = inputs
        last = len(stages) - 1
        try:
            for i, stage in enumerate(stages):
                handoffs = self._run_stage(stage, handoffs, out, piped=i < last)
        except PmdbError as err:
            out.errors.append(str(err))
            raise
        finally:
            out.flush()

    def _color(self) -> bool | None:
        """output.color: None (auto) leaves it to whether the stream is a terminal."""
        return {"always": True, "never": False}.get(str(self.config.get("output.color")))

    def _run_stage(self, stage: Stage, inputs: list[Handoff] | None, out: Output,
                   piped: bool) -> list[Handoff]:
        results: list[Handoff] = []
        state: dict[str, Any] = {}
        if inputs is None:
            addr = self._eval(stage.addr) if stage.addr is not None else None
            count, count_given = self._count(stage)
            results += self._call(stage, addr, None, count, count_given, out, piped, False, True, state)
            return results
        count, count_given = self._count(stage)
        with self.progress(_stage_name(stage), len(inputs)) as bar:
            for n, h in enumerate(inputs):
                self.dot = h.addr
                addr = self._eval(stage.addr) if stage.addr is not None else h.addr
                results += self._call(stage, addr, h.type, count, count_given, out, piped, True, n == 0, state)
                self.check_items(len(results))
                bar.advance(1)
        return results

    @contextmanager
    def progress(self, description: str, total: int = 0) -> Iterator[Progress]:
        """A bar on the terminal for work over many items that has run for a second (^C
        stops the work, and the bar with it); one at a time: work inside a bar gets none."""
        if self._progress_shown:
            yield NoProgress()
            return
        bar = command_bar(sys.stderr, delay=self.config.get("output.progress_after_ms") / 1000)
        self._progress_shown = True
        bar.start(description, total)
        try:
            yield bar
        finally:
            bar.finish()
            self._progress_shown = False

    def check_items(self, n: int) -> None:
        """LimitError when a stage has handed on more than limits.max_items addresses."""
        limit = self.config.get("limits.max_items")
        if n > limit:
            raise LimitError("limits.max_items", limit, "addresses handed on")

    def _count(self, stage: Stage) -> tuple[int, bool]:
        if stage.count is None:
            return 1, False
        return self._eval(stage.count), True

    def _eval(self, expr: Any) -> int:
        return evaluate(expr, self)

    def _call(self, stage: Stage, addr: int | None, typ: Any, count: int, count_given: bool,
              out: Output, piped: bool, in_loop: bool, first: bool,
              state: dict[str, Any]) -> list[Handoff]:
        verb = stage.verb
        if addr is not None:
            self.dot = addr
        ctx = Context(self, out, addr=addr, count=count, count_given=count_given, in_loop=in_loop,
                      first=first, piped=piped, type=typ, state=state)
        if verb is None:
            if addr is not None and piped:
                ctx.emit(addr, typ)
            return ctx.handoffs
        if isinstance(verb, AssignVerb):
            self.variables[verb.var] = addr if addr is not None else self.dot
            if piped and addr is not None:
                ctx.emit(addr, typ)
            return ctx.handoffs
        if isinstance(verb, FormatVerb):
            fmt = verb.fmt or self.last_format
            parse_format(fmt)    # a bad format is reported, not remembered
            self.last_format = fmt
            self.next_dot = run_format(ctx, verb.op, fmt, self.dot if addr is None else addr)
            return ctx.handoffs
        assert isinstance(verb, DcmdVerb)
        if verb.name == "$q":
            raise QuitRequest()
        spec = self.registry.dcmd(verb.name)
        args = [self._eval(a.expr) if a.expr is not None else Quoted(a.text) if a.quoted else a.text
                for a in verb.args]
        self.invoke(spec, ctx, args)
        return ctx.handoffs

    def invoke(self, spec: DcmdSpec, ctx: Context, args: Sequence[Any]) -> None:
        """Call a dcmd with parsed options, re-running over its walker when it has no address."""
        positional, options = parse_options(spec.name, spec.opts, args, spec.usage)
        ctx.argv = positional
        if ctx.addr is not None and spec.addr == "none":
            raise CommandError(f"{spec.name} does not take an address")
        if ctx.addr is None and spec.addr == "required":
            if spec.walker is None:
                raise CommandError(f"{spec.name} needs an address (addr::{spec.name} {spec.usage})".replace(" )", ")"))
            self._over_walker(spec, ctx, positional, options)
            return
        _bind_call(spec, ctx, positional, options)

    def _over_walker(self, spec: DcmdSpec, ctx: Context, positional: Sequence[Any],
                     options: dict[str, Any]) -> None:
        with self.progress(f"::{spec.name} over ::walk {spec.walker}") as bar:
            for n, h in enumerate(ctx.walk(spec.walker or "", None, positional)):
                self.dot = h.addr
                sub = Context(self, ctx.out, addr=h.addr, count=ctx.count, in_loop=True, first=n == 0,
                              piped=ctx.piped, type=h.type, argv=positional)
                _bind_call(spec, sub, positional, options)
                ctx.handoffs += sub.handoffs
                self.check_items(len(ctx.handoffs))
                bar.advance(1)

    def _shell(self, command: str, text: str) -> str:
        """What ``sh -c command`` prints with text on its input; its errors go to stderr."""
        import subprocess  # only here: a session without ! does not pay for it

        try:
            proc = subprocess.run(["/bin/sh", "-c", command], input=text, capture_output=True,
                                  text=True, timeout=self.config.get("shell.timeout"))
        except subprocess.TimeoutExpired:
            raise CommandError(f"shell command timed out: {command}") from None
        except OSError as err:
            raise CommandError(f"cannot run shell: {err}") from None
        if proc.stderr:
            self.stderr.write(proc.stderr)
        if proc.returncode != 0:
            self.failed = True
        return proc.stdout


def _stage_name(stage: Stage) -> str:
    """A stage as a progress bar names it: ``::walk``, ``/X``."""
    verb = stage.verb
    if isinstance(verb, DcmdVerb):
        return verb.name if verb.name.startswith("$") else f"::{verb.name}"
    if isinstance(verb, FormatVerb):
        return f"{verb.op}{verb.fmt}"
    return "pipe"


def pipeline_sources(text: str, pipelines: Sequence[Pipeline]) -> list[str]:
    """The source text of each pipeline of a line (what --json names the command by)."""
    starts = [p.stages[0].offset if p.stages else 0 for p in pipelines]
    if not starts:          # ';' or a comment alone: no pipeline (was a ValueError traceback)
        return []
    ends = starts[1:] + [len(text)]
    return [text[a:b].strip().rstrip(";").strip() for a, b in zip(starts, ends, strict=True)]


def _bind_call(spec: DcmdSpec, ctx: Context, positional: Sequence[Any], options: dict[str, Any]) -> None:
    try:
        inspect.signature(spec.func).bind(ctx, *positional, **options)
    except TypeError:
        usage = f" (usage: {spec.usage})" if spec.usage else ""
        raise CommandError(f"{spec.name}: wrong arguments{usage}") from None
    spec.func(ctx, *positional, **options)
