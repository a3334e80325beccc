"""The ``pmdb`` command: argv -> an open target and a Session -> commands -> exit status.

``pmdb triage PATH...`` is the fleet subcommand (pmdb/triage/cli.py).

Exit status: 0 when every command succeeded (or after an interactive session),
1 when a command from -e, -f or stdin failed, 2 for a usage
error or a dump that cannot be opened (always one line, never a traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from pmdb import __version__, progress
from pmdb.config import Config
from pmdb.errors import PmdbError
from pmdb.session import QuitRequest, Session
from pmdb.target import Target

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad command line or a dump that cannot be opened: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage and exits; one line is enough, --help has the rest
        raise UsageError(f"{message} (pmdb --help for usage)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pmdb", description="Post-mortem debugger for crash dumps (mdb language).",
                epilog="Without -e/-f and without a terminal on stdin, commands are read from stdin.")
    p.add_argument("dump", nargs="?", metavar="DUMP",
                   help="the core or crash dump to open (none: no target, as mdb without one)")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="executables or libraries for symbols; for a kernel dump, its debug vmlinux")
    p.add_argument("-e", dest="commands", action="append", metavar="CMDS",
                   help="run these commands and exit (repeatable)")
    p.add_argument("-f", dest="script", metavar="SCRIPT", help="run the commands in SCRIPT and exit")
    p.add_argument("--json", action="store_true", help="print JSON records instead of text")
    p.add_argument("--demo", action="store_true", help="open the bundled demo dump")
    p.add_argument("-s", dest="symbol_files", action="append", default=[], metavar="FILE",
                   help="an extra symbol or object file (repeatable)")
    p.add_argument("--sysroot", metavar="DIR", help="root prefixed to the paths recorded in the dump")
    p.add_argument("--config", metavar="FILE", help="a pmdb.toml to use instead of the default")
    p.add_argument("-q", dest="quiet", action="store_true", help="no banner")
    p.add_argument("--norc", action="store_true",
                   help="do not run ~/.pmdbrc at start (nor when PMDB_NORC is set)")
    p.add_argument("--version", action="version", version=f"pmdb {__version__}")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(_join_commands(sys.argv[1:] if argv is None else argv))
    if args.demo:
        if args.dump:       # with --demo, positional words are symbol files at most
            args.files.insert(0, args.dump)
        args.dump = None
    elif not args.dump and args.files:
        raise UsageError("symbol files need a dump: pmdb [options] DUMP [FILE...]")
    if args.commands and args.script:
        raise UsageError("-e and -f cannot be used together")
    return args


def _join_commands(argv: Sequence[str]) -> list[str]:
    """``-e CMDS`` as one word, so a command that starts with '-' (``-1=D``) is not taken
    for an option, as mdb -e takes it."""
    out: list[str] = []
    it = iter(argv)
    for word in it:
        if word == "--":
            out += [word, *it]
            break
        nxt = next(it, None) if word == "-e" else None
        out.append(word if nxt is None else f"-e{nxt}")
    return out


def open_dump(args: argparse.Namespace, config: Config) -> Target | None:
    """The target named on the command line, None when there is none (pmdb is then mdb's
    calculator, type workbench and shell); UsageError (one line) when it cannot be opened."""
    from pmdb.opener import open_target

    if not args.dump and not args.demo:
        return None
    path = args.dump
    if args.demo:
        from pmdb.demo import demo_path

        path = demo_path()
    try:
        return open_target(path, config=config, symbol_files=[*args.symbol_files, *args.files],
                           sysroot=args.sysroot, progress=progress.for_stream(sys.stderr))
    except OSError as err:
        raise UsageError(f"cannot open {path}: {err.strerror or err}") from None


def banner(target: Target | None, demo: bool) -> str:
    if target is None:
        return (f"pmdb {__version__}: no target (a calculator, ::typedef and ! work; "
                "pmdb DUMP opens one)\nType ::help for commands, $q to quit.")
    threads = len(target.threads())
    head = (f"pmdb {__version__}: {target.path} ({target.kind}, {target.arch.name}, "
            f"{threads} thread{'s' if threads != 1 else ''})")
    if demo:
        from pmdb.demo import BANNER

        return f"{head}\n{BANNER}"
    return f"{head}\nType ::help for commands, $q to quit."


def run(session: Session, args: argparse.Namespace, *, show_banner: str) -> bool:
    """Run what the command line asks for: -e, -f, stdin, or the interactive REPL;
    True when the exit status should report failed commands (not after a REPL)."""
    try:
        if args.commands:
            for text in args.commands:
                session.run_line(text)
        elif args.script:
            session.run_script(_read_script(args.script))
        elif not sys.stdin.isatty():
            session.run_script(sys.stdin)
        else:
            from pmdb.repl.app import run_repl

            # at a prompt a failed command is answered on the spot, not by the exit status
            run_repl(session, banner=show_banner)
            return False
    except QuitRequest:
        pass
    return True


RC_FILE = "~/.pmdbrc"


def run_rc(session: Session, *, skip: bool = False) -> None:
    """Run ~/.pmdbrc's commands (as mdb runs ~/.mdbrc) before anything else, unless --norc
    or PMDB_NORC says not to. Its failures are reported but do not make a later -e or -f
    fail (the exit status is about the commands asked for)."""
    if skip or os.environ.get("PMDB_NORC"):
        return
    path = os.path.expanduser(RC_FILE)
    if not os.path.isfile(path):
        return
    try:
        lines = _read_script(path)
    except UsageError as err:
        sys.stderr.write(f"pmdb: {err}\n")
        return
    try:
        session.run_script(lines)
    except QuitRequest:         # $q in the rc file ends the rc file, not pmdb
        pass
    finally:
        session.failed = False


def _read_script(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readlines()
    except OSError as err:
        raise UsageError(f"cannot read script {path}: {err.strerror or err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: see the module docstring for the exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["triage"]:         # the fleet subcommand: pmdb triage PATH...
        from pmdb.triage.cli import main as triage_main

        return triage_main(words[1:])
    try:
        args = parse_args(argv)
        config = Config.load(args.config)
        target = open_dump(args, config)
    except (UsageError, PmdbError) as err:
        return _fail(str(err))
    for warning in target.warnings if target is not None else ():
        sys.stderr.write(f"pmdb: warning: {warning}\n")
    session = Session(target, config=config, json_mode=args.json)
    text = "" if args.quiet else banner(target, args.demo)
    try:
        run_rc(session, skip=args.norc)
        scripted = run(session, args, show_banner=text)
    except UsageError as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        sys.stderr.write("pmdb: interrupted\n")
        return EXIT_FAILED
    finally:
        _flush_quietly()
        if target is not None:
            target.close()
    return EXIT_FAILED if scripted and session.failed else EXIT_OK


def _fail(message: str) -> int:
    sys.stderr.write(f"pmdb: {message}\n")
    if os.environ.get("PMDB_DEBUG"):
        import traceback

        traceback.print_exc()
    return EXIT_USAGE


def _flush_quietly() -> None:
    """Flush stdout, ignoring a reader that went away (pmdb ... | head)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # keep the interpreter's own flush at exit from raising again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
