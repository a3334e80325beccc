"""The prompt_toolkit half of completion: candidates for the kind suggest() names.

Candidates come from the live session (its registry and target); type and
symbol name lists are read once and kept, since a large target's DWARF is slow
to enumerate and completion runs on every Tab.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from pmdb.errors import PmdbError
from pmdb.repl.suggest import Suggestion, suggest
from pmdb.session import Session
from pmdb.types.model import Type

MAX_CANDIDATES = 500   # a menu longer than this helps nobody; type more of the name


class SessionCompleter(Completer):
    def __init__(self, session: Session) -> None:
        self.session = session
        self._types: list[str] | None = None
        self._symbols: list[str] | None = None
        self._caches: list[str] | None = None
        self._paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        s = suggest(document.text, document.cursor_position)
        if s.kind == "file":
            yield from self._paths.get_completions(Document(s.prefix, len(s.prefix)), complete_event)
            return
        try:
            names = sorted(set(self.candidates(s)))
        except PmdbError:       # e.g. an unknown type before the member: nothing to offer
            return
        for name in names[:MAX_CANDIDATES]:
            yield Completion(name, start_position=-len(s.prefix), display_meta=s.kind)

    def candidates(self, s: Suggestion) -> Iterable[str]:
        """Names of the suggested kind that start with its prefix."""
        prefix = s.prefix
        if s.kind == "dcmd":
            return (n for n in self.session.registry.dcmd_names()
                    if n.startswith(prefix) and (n.startswith("$") == prefix.startswith("$")))
        if s.kind == "walker":
            return (n for n in self.session.registry.walkers if n.startswith(prefix))
        if s.kind == "option":
            return self._options(s)
        target = self.session.target
        if target is None:
            return ()
        if s.kind == "symbol":
            return self._symbol_names(s)
        if s.kind == "type":
            return (n for n in self._type_names() if n.startswith(prefix)
                    or n.partition(" ")[2].startswith(prefix))
        if s.kind == "member":
            return (n for n in member_names(self.session, s.context, s.path, variable=s.variable)
                    if n.startswith(prefix))
        if s.kind == "cache":
            return (n for n in self._cache_names() if n.startswith(prefix))
        if s.kind == "foreach":
            return (n for n in foreach_words() if n.startswith(prefix))
        return ()

    def _cache_names(self) -> list[str]:
        """The kernel's slab cache names (none on a user core or without slab types)."""
        if self._caches is None:
            from pmdb.os.linux.slab.slub import slub_model

            try:
                self._caches = [c.name for c in slub_model(self.session.target).caches()]
            except PmdbError:
                self._caches = []
        return self._caches

    def _options(self, s: Suggestion) -> Iterable[str]:
        if not self.session.registry.has_dcmd(s.context):
            return ()
        opts = self.session.registry.dcmd(s.context).opts
        return (f"-{k.rstrip(':')}" for k in opts if f"-{k.rstrip(':')}".startswith(s.prefix))

    def _symbol_names(self, s: Suggestion) -> Iterable[str]:
        target = self.session.target
        assert target is not None
        if s.context:       # lib`sym: only that module's symbols
            mod = s.context
            return {sym.name for sym in target.symbols
                    if sym.name.startswith(s.prefix) and (sym.module or "").startswith(mod)}
        if self._symbols is None:
            self._symbols = sorted(n for n in target.symbols.names() if n)
        if not s.prefix:    # after an operator: only a first screenful, never every symbol
            return itertools.islice(self._symbols, 0, 50)
        return (n for n in self._symbols if n.startswith(s.prefix))

    def _type_names(self) -> list[str]:
        if self._types is None:
            target = self.session.target
            self._types = sorted(target.types.names()) if target is not None else []
        return self._types


def foreach_words() -> list[str]:
    """What crash's foreach takes before its command: task selectors, then the commands."""
    from pmdb.language.crash_aliases import CRASH_ALIASES

    return [*FOREACH_SELECTORS, *sorted(CRASH_ALIASES)]


# crash's foreach selectors besides pids, task addresses and command names
FOREACH_SELECTORS = ("user", "kernel", "gleader", "active", "RU", "IN", "UN", "ST", "TR", "ZO", "DE", "PA", "WA",
                     "NE", "WK", "ID")


def member_names(session: Session, type_name: str, path: tuple[str, ...], *, variable: str = "") -> list[str]:
    """Members of ``type_name`` (or of the global ``variable``'s type), following ``path``
    through pointers and arrays as ::print does."""
    target = session.target
    if target is None or not (type_name or variable):
        return []
    if variable:
        vtype = target.types.variable_type(variable)
        if vtype is None:
            return []
        t = vtype.strip()
    else:
        t = target.types.lookup(type_name).strip()
    while t.kind in ("pointer", "array") and t.target is not None:
        t = t.target.strip()
    for name in path:
        found = t.find_member(name)
        if found is None:
            return []
        t = found[0].type.strip()
        while t.kind in ("pointer", "array") and t.target is not None:
            t = t.target.strip()
    return list(_flat_members(t))


def _flat_members(t: Type) -> Iterator[str]:
    """Member names, looking into anonymous structs and unions as C does."""
    for m in t.members:
        if m.name:
            yield m.name
        elif m.type.strip().kind in ("struct", "union"):
            yield from _flat_members(m.type.strip())
