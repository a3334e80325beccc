"""pmdb: a post-mortem debugger for crash dumps, speaking the mdb language.

From the shell: ``pmdb DUMP [VMLINUX]`` (``pmdb --help``). From Python::

    import pmdb
    prog = pmdb.open("vmcore")            # a Linux vmcore or a user core (+ debug files)
    prog["init_task"].comm                # typed Objects; repr is ::print's text
    prog.object(addr, "struct task_struct").pid
    prog.tasks()                          # struct task_struct Objects, crash's ps order
    prog.stack(pid)                       # frames: pc, sp, function, source line when known
    prog.msgbuf()                         # the kernel log, one string per record
    prog.type("struct slab")              # a type by its C spelling
    prog.threads()                        # a user core's threads
    prog.run("::ps")                      # any command line: rows as dicts, text as lines

``help(pmdb.open)``, ``help(pmdb.Program)`` and ``help(pmdb.Object)`` say more.
Importing pmdb is cheap: the API loads on first use of one of these names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pmdb.codecache import install as _install_code_cache

if TYPE_CHECKING:     # what the lazy names are, for type checkers and editors
    from pmdb.api.objects import Object
    from pmdb.api.program import Program, open
    from pmdb.api.results import Address, Result, Row
    from pmdb.api.stack import Stack, StackFrame
    from pmdb.errors import PmdbError

__version__ = "0.1.0"

_install_code_cache()     # before any pmdb module defines a dataclass (see pmdb.codecache)

# name -> module that defines it; imported on first use (PEP 562) so `import pmdb` stays cheap
_LAZY = {
    "open": "pmdb.api.program",
    "Program": "pmdb.api.program",
    "Object": "pmdb.api.objects",
    "Stack": "pmdb.api.stack",
    "StackFrame": "pmdb.api.stack",
    "Result": "pmdb.api.results",
    "Row": "pmdb.api.results",
    "Address": "pmdb.api.results",
    "PmdbError": "pmdb.errors",
}

__all__ = ["Address", "Object", "PmdbError", "Program", "Result", "Row", "Stack", "StackFrame", "open"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pmdb' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
