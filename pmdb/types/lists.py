"""Linked lists and trees in memory: which pointer links a node to the next, and bounded walks.

Two kinds of list are walked the same way. In a plain list a node's next pointer
holds the next node's address (``struct node *next``). In a Linux ``list_head`` list
it holds the address of the *embedded* link in the next node, so the node is that
address minus the link's offset (container_of). ``ListLink`` carries both offsets,
worked out from the member a user names (``next``, ``tasks``, ``tasks.next``,
``pids[0].node``), so ::list, ::walk list and crash's ``list`` agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pmdb.errors import CommandError, CorruptionError, FaultError
from pmdb.memory.space import AddressSpace
from pmdb.types.model import Type, type_name
from pmdb.types.value import parse_index, path_offset, split_path, take_type

if TYPE_CHECKING:
    from pmdb.types.registry import TypeRegistry

LIST_LIMIT = 1_000_000     # nodes at most before a list is called corrupt


@dataclass(frozen=True)
class ListLink:
    """Where a node's next pointer is (``next_offset``) and what a next pointer points at:
    ``entry_offset`` bytes into the next node (0: the node itself; a list_head's offset)."""

    next_offset: int
    entry_offset: int = 0
    node_type: Type | None = None


def is_link_struct(t: Type) -> bool:
    """A linkage struct whose first member is the next pointer: list_head, hlist_node,
    llist_node (whatever its name, by its shape)."""
    s = t.strip()
    if s.kind != "struct" or not s.members:
        return False
    first = s.members[0]
    return first.name == "next" and first.offset == 0 and first.type.strip().kind == "pointer"


def link_of(node_type: Type, member: str) -> ListLink:
    """The link through ``member`` of node_type: a next pointer (``next``, ``tasks.next``)
    or an embedded linkage struct (``tasks``)."""
    bit_off, mtype, _ = path_offset(node_type, member)
    if bit_off % 8:
        raise CommandError(f"{member} of {type_name(node_type)} is a bitfield, not a link")
    offset = bit_off // 8
    if is_link_struct(mtype):
        return ListLink(offset, offset, node_type)      # next points at the next node's copy
    if mtype.strip().kind != "pointer":
        raise CommandError(f"{member} of {type_name(node_type)} is neither a pointer nor a "
                           f"list_head (it is {type_name(mtype)})")
    steps = split_path(member)
    if len(steps) > 1 and steps[-1][0] == "member":
        parent = member[:member.rfind(".")] if "." in member else ""
        if parent:
            p_off, p_type, _ = path_offset(node_type, parent)
            if is_link_struct(p_type) and p_off % 8 == 0:
                return ListLink(offset, p_off // 8, node_type)   # tasks.next: container_of
    return ListLink(offset, 0, node_type)


def list_link(types: TypeRegistry, args: list[Any], pipe_type: Type | None) -> ListLink:
    """The link from ``type member``, ``member`` (of the type the pipe carries) or a number
    (a raw byte offset of a next pointer, as mdb allows)."""
    if not args:
        raise CommandError("a member name (or type and member) is needed")
    if len(args) == 1:
        only = args[0]
        if isinstance(only, int):
            return ListLink(only)
        if str(only)[:1].isdigit():
            return ListLink(parse_index(str(only)))
        if pipe_type is None:
            raise CommandError(f"no type for member '{only}': give it (type {only})")
        return link_of(pipe_type, str(only))
    spelling, rest = take_type(args)
    if len(rest) != 1:
        raise CommandError("a type and one member are needed (type member)")
    return link_of(types.lookup(spelling), str(rest[0]))


def walk_list(memory: AddressSpace, start: int, link: ListLink | int, limit: int = LIST_LIMIT,
              *, head: int | None = None, end: int | None = None) -> Iterator[int]:
    """The nodes of a list, bounded and loop-safe.

    From node ``start`` (yielded first) when ``head`` is None; otherwise from the
    standalone list head at ``head`` (not a node: it is not yielded). The list ends at a
    NULL next pointer, at a pointer back to the start (or to the head), at a node that
    points at itself, or at ``end``; a loop anywhere else is corruption."""
    if isinstance(link, int):
        link = ListLink(link)
    ends = {0} if end is None else {0, end}
    if head is None:
        ends |= {start, start + link.entry_offset}
        node = start
    else:
        ends.add(head)
        raw = _next(memory, head + link.next_offset - link.entry_offset, head)   # next (or prev)
        if raw in ends:
            return
        node = raw - link.entry_offset
    seen: set[int] = set()
    while True:
        if node in seen:
            raise CorruptionError(node, f"list from {start:#x} loops back to {node:#x}, not to its start")
        if len(seen) >= limit:
            raise CorruptionError(node, f"list from {start:#x} is longer than {limit} nodes")
        seen.add(node)
        yield node
        raw = _next(memory, node + link.next_offset, node)
        if raw in ends or raw - link.entry_offset == node:
            return
        node = raw - link.entry_offset


def _next(memory: AddressSpace, at: int, node: int) -> int:
    try:
        return memory.ptr(at)
    except FaultError as err:
        raise CorruptionError(node, f"cannot read the next pointer ({err})") from None


def walk_rbtree(memory: AddressSpace, root: int, left: int, right: int,
                limit: int = LIST_LIMIT) -> Iterator[int]:
    """The nodes of a binary tree in order (Linux's rb_node: ``rb_left`` and ``rb_right`` at
    byte offsets ``left`` and ``right``), from the node ``root`` (0: an empty tree). Bounded,
    and a node met twice (a loop) is corruption."""
    seen: set[int] = set()
    stack: list[int] = []
    node = root
    while stack or node:
        while node:
            if node in seen:
                raise CorruptionError(node, f"the tree at {root:#x} reaches {node:#x} twice")
            if len(seen) >= limit:
                raise CorruptionError(node, f"the tree at {root:#x} has more than {limit} nodes")
            seen.add(node)
            stack.append(node)
            node = _next(memory, node + left, node)
        node = stack.pop()
        yield node
        node = _next(memory, node + right, node)


def rbtree_positions(memory: AddressSpace, root: int, left: int, right: int, *, linear: bool = False,
                     limit: int = LIST_LIMIT) -> Iterator[tuple[int, str]]:
    """(node, position) for each node of a binary tree: root first, then the left subtree
    and the right one (crash's ``tree`` order), or in order with ``linear`` (crash's -l).
    The position is crash's ``root/l/r`` path. Bounded and loop-safe as walk_rbtree."""
    seen: set[int] = set()
    # a stack of (node, position, children pushed yet): explicit, so a deep tree cannot
    # exhaust Python's recursion
    stack: list[tuple[int, str, bool]] = [(root, "root", False)] if root else []
    while stack:
        node, pos, expanded = stack.pop()
        if expanded:
            yield node, pos
            continue
        if node in seen:
            raise CorruptionError(node, f"the tree at {root:#x} reaches {node:#x} twice")
        if len(seen) >= limit:
            raise CorruptionError(node, f"the tree at {root:#x} has more than {limit} nodes")
        seen.add(node)
        lnode, rnode = _next(memory, node + left, node), _next(memory, node + right, node)
        rchild = [(rnode, f"{pos}/r", False)] if rnode else []
        lchild = [(lnode, f"{pos}/l", False)] if lnode else []
        here = [(node, pos, True)]
        stack += rchild + here + lchild if linear else rchild + lchild + here
