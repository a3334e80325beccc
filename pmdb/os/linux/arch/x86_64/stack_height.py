"""How far a function has moved the stack pointer at an address, read from its code.

For code objtool left without ORC data (``STACK_FRAME_NON_STANDARD``: ``__crash_kexec``,
whose registers are the panic CPU's in every kdump vmcore, is one) the frame is worked out
from the instructions themselves: a linear pass from the start of the undescribed run adds
up pushes, pops and immediate ``sub``/``add`` of %rsp. Code after a ``ret`` or ``jmp`` is
an out-of-line path of the function body, reached at the body's height (the height when
the prologue of pushes and ``sub rsp`` ended). Anything it cannot follow (``leave``,
%rsp from another register, a frame pointer) gives None, and the walk stops as before.
"""

from __future__ import annotations

MAX_CODE = 4096          # bytes of one function looked at, at most

_PROLOGUE = {"nop", "endbr64", "push", "sub", "mov"}


def stack_height(code: bytes, start: int, ip: int) -> int | None:
    """Bytes pushed below the return address when execution reaches ``ip`` in the code
    that begins at ``start`` (``code`` holds [start, ip)); None when it cannot be known."""
    from capstone import CS_ARCH_X86, CS_MODE_64, Cs
    from capstone.x86 import X86_OP_IMM, X86_OP_REG, X86_REG_RSP

    cs = Cs(CS_ARCH_X86, CS_MODE_64)
    cs.detail = True
    height, body = 0, None
    reached = start
    for insn in cs.disasm(code[:MAX_CODE], start):
        if insn.address >= ip:
            break
        reached = insn.address + insn.size
        name = insn.mnemonic
        ops = insn.operands
        writes_rsp = any(op.type == X86_OP_REG and op.reg == X86_REG_RSP for op in ops[:1])
        if body is None and name not in _PROLOGUE:
            body = height
        if name in ("push", "pushfq"):
            height += 8
        elif name in ("pop", "popfq"):
            height -= 8
        elif name in ("sub", "add") and writes_rsp:
            if len(ops) != 2 or ops[1].type != X86_OP_IMM:
                return None
            height += ops[1].imm if name == "sub" else -ops[1].imm
        elif name == "leave" or (writes_rsp and name not in ("cmp", "test")):
            return None
        elif name in ("ret", "jmp"):
            height = body if body is not None else height
        if height < 0:
            return None
    if reached < ip:
        return None          # the code did not decode up to ip
    return height
