"""Evaluate expression ASTs: 64-bit unsigned arithmetic, mdb's operators.

The evaluator reads memory only through the environment it is given, so the
parser never touches the target.
"""

from __future__ import annotations

from typing import Protocol

from pmdb.errors import CommandError
from pmdb.language.ast import Binary, Deref, Dot, Expr, Num, Sym, Unary, VarRef

MASK = (1 << 64) - 1


class Environment(Protocol):
    @property
    def dot(self) -> int: ...

    @property
    def ptr_size(self) -> int: ...

    def symbol_value(self, name: str, module: str | None) -> int: ...

    def find_symbol(self, name: str) -> int | None:
        """The address of a symbol spelled like a hex number, None when there is none."""

    def variable(self, name: str) -> int: ...

    def read_int(self, addr: int, size: int) -> int: ...


def evaluate(expr: Expr, env: Environment) -> int:
    """The value of expr as an unsigned 64-bit integer."""
    if isinstance(expr, Num):
        if expr.word is not None:
            found = env.find_symbol(expr.word)
            if found is not None:
                return found & MASK
        return expr.value & MASK
    if isinstance(expr, Dot):
        return env.dot
    if isinstance(expr, Sym):
        return env.symbol_value(expr.name, expr.module) & MASK
    if isinstance(expr, VarRef):
        return env.variable(expr.name) & MASK
    if isinstance(expr, Deref):
        addr = evaluate(expr.operand, env)
        return env.read_int(addr, expr.size or env.ptr_size)
    if isinstance(expr, Unary):
        v = evaluate(expr.operand, env)
        if expr.op == "-":
            return -v & MASK
        if expr.op == "~":
            return ~v & MASK
        if expr.op == "#":
            return int(v == 0)
        raise CommandError(f"unknown unary operator {expr.op!r}")
    if isinstance(expr, Binary):
        a = evaluate(expr.left, env)
        b = evaluate(expr.right, env)
        return _binary(expr.op, a, b)
    raise CommandError(f"cannot evaluate {expr!r}")


def _binary(op: str, a: int, b: int) -> int:
    if op in ("%", "%%") and b == 0:
        raise CommandError("division by zero")
    result = {
        "+": lambda: a + b,
        "-": lambda: a - b,
        "*": lambda: a * b,
        "%": lambda: a // b,
        "%%": lambda: a % b,
        "&": lambda: a & b,
        "|": lambda: a | b,
        "^": lambda: a ^ b,
        "<<": lambda: a << min(b, 64),
        ">>": lambda: a >> min(b, 64),
        "==": lambda: int(a == b),
        "!=": lambda: int(a != b),
    }.get(op)
    if result is None:
        raise CommandError(f"unknown operator {op!r}")
    return result() & MASK
