"""``::print`` in JSON: an object as a tree of members (name, type, address, value or members).

The text form is pmdb.types.printer's (mdb's layout); this is the same walk
over an Object, with values typed for the output layer: pointers are
addresses (Hex), integers numbers, an unreadable member one Unreadable
cell while its siblings still show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pmdb.errors import FaultError
from pmdb.output import Hex, Unreadable
from pmdb.types.model import type_name
from pmdb.types.printer import PrintOptions, is_char
from pmdb.types.value import Object

Describe = Callable[[int], str]


def member_tree(obj: Object, opts: PrintOptions, name: str | None = None) -> dict[str, Any]:
    """``{"name", "type", "address", "value" | "members" | "elements"}`` for obj."""
    node: dict[str, Any] = {"name": name, "type": type_name(obj.type), "address": Hex(obj.address)}
    if obj.bit_size:
        node["bits"] = obj.bit_size
    try:
        kind = obj.kind
        if kind in ("struct", "union"):
            node["members"] = [member_tree(sub, opts, m.name or None) for m, sub in obj.members()]
        elif kind == "array":
            node.update(_array(obj, opts))
        else:
            node.update(_scalar(obj, kind, opts.describe))
    except FaultError as err:
        node["value"] = Unreadable(err.address, str(err))
    return node


def _array(obj: Object, opts: PrintOptions) -> dict[str, Any]:
    t = obj.type.strip()
    count = t.count or 0
    if is_char(t.target) and 0 < count <= opts.string_limit:
        text = obj.memory.read(obj.address, count).split(b"\0", 1)[0]
        if all(32 <= c < 127 for c in text):
            return {"value": text.decode("ascii")}
    limit = min(count, opts.array_limit)
    out: dict[str, Any] = {"elements": [member_tree(obj[i], opts) for i in range(limit)]}
    if count > limit:
        out["truncated"] = count
    return out


def _scalar(obj: Object, kind: str, describe: Describe) -> dict[str, Any]:
    if kind == "pointer":
        value = int(obj)
        out: dict[str, Any] = {"value": Hex(value)}
        text = describe(value) if value else ""
        if text and not text.startswith("0x"):
            out["symbol"] = text
        return out
    if kind == "func":
        return {"value": Hex(obj.address), "symbol": describe(obj.address)}
    if kind == "float":
        return {"value": obj.float_value()}
    if kind == "enum":
        return {"value": int(obj), "enumerator": obj.enum_name()}
    if kind in ("int", "bool"):
        return {"value": int(obj)}
    return {"value": None}
