"""The generic list walker: follow a next-pointer member from node to node."""

from __future__ import annotations

from collections.abc import Iterator

from pmdb.commands import Context, walker
from pmdb.errors import CommandError
from pmdb.types.lists import list_link, walk_list


@walker("list", synopsis="the nodes of a linked list, through a next-pointer member",
        example="0x10e014b0::walk list struct node next")
def walk_list_nodes(ctx: Context, start: int | None) -> Iterator[int]:
    """From the start address, each node until a NULL next pointer or back at the start.
    The arguments name the link: ``type member``, a ``member`` of the type the pipe
    carries, or a byte offset; a member that is (or is in) a list_head is followed as
    container_of would, so ``task_struct tasks`` yields task addresses. Bounded, and a loop elsewhere than the start is reported as
    corruption after the nodes before it."""
    if start is None:
        raise CommandError("the list walker needs a start address (addr::walk list type member)")
    yield from walk_list(ctx.target.memory, start, list_link(ctx.target.types, list(ctx.argv), ctx.type))
