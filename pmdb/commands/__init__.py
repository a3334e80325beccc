"""dcmds and walkers: decorators, the per-session registry, and the call context."""

from pmdb.commands.context import Context
from pmdb.commands.registry import Registry, dcmd, walker

__all__ = ["Context", "Registry", "dcmd", "walker"]
