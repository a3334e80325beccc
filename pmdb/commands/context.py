"""Context: what one dcmd call knows (mdb's flags, as attributes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pmdb.errors import CommandError

if TYPE_CHECKING:
    from pmdb.os.linux.kernel import LinuxKernel
    from pmdb.os.user.process import UserProcess
    from pmdb.output import Output
    from pmdb.session import Session
    from pmdb.target import Target
    from pmdb.types.model import Type


_M = TypeVar("_M")


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
    def kernel(self) -> LinuxKernel:
        """The target's Linux kernel model; one clear error when the target is not a kernel."""
        from pmdb.os.linux.kernel import LinuxKernel

        return _os_as(self.target, LinuxKernel, "a Linux kernel dump")

    @property
    def process(self) -> UserProcess:
        """The target's user-process model; one clear error when the target is not a user core."""
        from pmdb.os.user.process import UserProcess

        return _os_as(self.target, UserProcess, "a user core")

    @property
    def is_kernel(self) -> bool:
        """Whether the target is a Linux kernel dump (for dcmds that serve both kinds)."""
        from pmdb.os.linux.kernel import LinuxKernel

        return isinstance(self.target.os, LinuxKernel)

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


def _os_as(target: Target, cls: type[_M], needed: str) -> _M:
    """The target's OS model as cls, or the error that names what the dcmd needs."""
    os_model: object = target.os
    if not isinstance(os_model, cls):
        raise CommandError(f"this dcmd needs {needed} (the target is {_what(os_model)})")
    return os_model


def _what(os_model: object) -> str:
    """A target's kind in words, for the error of a dcmd that needs another kind."""
    name = getattr(os_model, "name", "")
    return {"linux": "a Linux kernel dump", "user": "a user core"}.get(str(name), f"a {name or 'target'} target")
