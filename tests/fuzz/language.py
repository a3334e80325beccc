"""Fuzz targets for text pmdb reads: the mdb language and pmdb.toml.

The language target runs each input line through the lexer (strict, and tolerant as
the prompt's highlighter uses it), the completer's suggest(), the parser and then a FuzzSession on a real kernel dump,
so the evaluator and the format verbs (``addr,count/fmt``) see it too; a line
that would reach the host (``!``, ``$<``, ::emulate) is only parsed.
"""

from __future__ import annotations

import os
import tempfile

from pmdb.config import Config
from pmdb.errors import PmdbError
from pmdb.language.lexer import tokenize
from pmdb.language.parser import parse
from pmdb.repl.suggest import suggest
from tests.fuzz.harness import CORPUS, FuzzTarget, expect_pmdb_errors, run_lines
from tests.fuzz.kernel import KASLR_DUMP, base

SEED_LINES = [
    "::status", "::ps", "init_task/0tt", "init_task,8/K", "init_task::print task_struct pid comm",
    "::walk task | ::print task_struct pid", "10=X", "0t10=D", "0i101=J", "main?i", "-1=e",
    "init_task,4/Xn", "init_task/s", "init_task/2p", "init_task=a", "<rsp,4/K", "jiffies_64/E",
    "init_task>t; <t/K", "::walk task | ::head -n 3", "init_task,2/10Y", "::help ps",
    "init_task::print -t task_struct", "::sizeof struct task_struct", "1+2*3-(4%5)=D",
    "init_task+0x10/8B", "::formats", "struct task_struct.pid init_task", "rd init_task 8",
]


def run_language(data: bytes) -> None:
    text = data.decode("utf-8", "replace")[:400]
    for line in text.splitlines()[:4] or [""]:
        expect_pmdb_errors(lambda line=line: tokenize(line))
        expect_pmdb_errors(lambda line=line: parse(line))
        tokenize(line, tolerant=True)           # the highlighter's: never raises
        suggest(line, len(line))
        if KASLR_DUMP.exists():
            run_lines(base(KASLR_DUMP), [line])
        else:
            run_lines(None, [line])


def seeds_language() -> list[bytes]:
    kept = sorted((CORPUS / "language").glob("*")) if (CORPUS / "language").is_dir() else []
    return [line.encode() for line in SEED_LINES] + [p.read_bytes() for p in kept if p.is_file()]


def run_config(data: bytes) -> None:
    from pmdb.emulate.options import config_table

    with tempfile.NamedTemporaryFile("wb", suffix=".toml", delete=False) as f:
        f.write(data)
        path = f.name
    try:
        cfg = Config.from_file(path)
        for name in ("output.color", "cache.max_size_mb", "limits.max_lines", "symbols.search_path"):
            cfg.get(name)
        expect_pmdb_errors(lambda: config_table(cfg))
    except PmdbError:
        pass
    finally:
        os.unlink(path)


def seeds_config() -> list[bytes]:
    from tests.conftest import ROOT

    toml = (ROOT / "pmdb.toml").read_bytes()
    return [toml, b"[emulate]\nargs = [1, \"*g\"]\nbudget = 5\n", b"[limits]\nmax_lines = 0\n"]


TARGETS = [
    FuzzTarget("language", "the mdb language: lexer, parsers, evaluator and format verbs on a dump",
               run_language, seeds_language),
    FuzzTarget("config", "pmdb.toml: the option table and the [emulate] table", run_config, seeds_config),
]
