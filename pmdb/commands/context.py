"""Context: what one dcmd call knows (mdb's flags, as attributes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pmdb.errors import CommandError

if TYPE_CHECKING:
    from pmdb.output import Output
    from pmdb.session import Session
    from pmdb.target import Target
    from pmdb.types.model import Type


@dataclass
class Handoff:
    """An address handed to the next pipe stage, with its type when known."""

    addr: int
    type: Type | None = None


@dataclass
class Context:
    session: Session
    out: Output
    addr: int | None = None          # None when the dcmd was called without an address
    count: int = 1
    count_given: bool = False
    in_loop: bool = False            # called once per address of a pipe or walk
    first: bool = True               # the first call of such a loop
    piped: bool = False              # output goes to another dcmd: hand on addresses
    type: Type | None = None         # the type carried with addr from the previous stage
    argv: Sequence[Any] = ()
    handoffs: list[Handoff] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # shared by every call of one pipe stage

    @property
    def target(self) -> Target:
        t = self.session.target
        if t is None:
            raise CommandError("no target is open")
        return t

    @property
    def addressed(self) -> bool:
        return self.addr is not None

    @property
    def dot(self) -> int:
        return self.session.dot

    def emit(self, addr: int, type: Type | None = None) -> None:
        """Hand addr on to the next stage of the pipeline."""
        self.handoffs.append(Handoff(addr, type))

    def require_addr(self) -> int:
        if self.addr is None:
            raise CommandError("this dcmd needs an address")
        return self.addr
