"""Disassembly through capstone, for any Arch, with decoded instructions cached.

One Disassembler per target (``disassembler_for``): ``::dis``, the ``/i``
format and the emulator's tracer all decode the same code again and again,
so instructions are cached by address. capstone's errors are translated here;
an undecodable byte sequence becomes a ``(bad)`` instruction rather than an
exception, so one bad byte never ends a listing.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pmdb.errors import CommandError, FaultError

if TYPE_CHECKING:
    from pmdb.target import Target

MAX_INSN = 16                 # longest instruction of any supported arch (x86: 15)
_CACHE_LIMIT = 200_000
_BRANCH_TARGET = re.compile(r"(?:^|[\s,])#?(0x[0-9a-f]+)$")
_RIP_REL = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+)\]")


@dataclass(frozen=True)
class Insn:
    address: int
    size: int
    mnemonic: str
    op_str: str
    raw: bytes
    target: int | None = None     # where a direct branch or call goes
    rip_ref: int | None = None    # the address a rip-relative operand names (x86-64)

    @property
    def end(self) -> int:
        return self.address + self.size

    @property
    def bad(self) -> bool:
        return self.mnemonic == "(bad)"


class Disassembler:
    """Decodes a target's code; see the module docstring."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._cs = _capstone(target)
        self._cache: dict[int, Insn] = {}
        self._att: Any = None                 # a second capstone, for AT&T (gnu())
        arch = target.arch
        # 0 for x86's variable-length code; fixed-width ISAs can be decoded backwards
        self.fixed_width = 0 if arch.name in ("x86_64", "i386") else 4
        self._bad_step = self.fixed_width or 1
        # capstone 5 gives SPARC instructions no groups: know its branches by name
        self._branch_names: tuple[str, ...] = ("call", "b", "fb") if arch.name.startswith("sparc") else ()

    def decode(self, addr: int) -> Insn:
        """The instruction at addr; FaultError when its first byte cannot be read."""
        hit = self._cache.get(addr)
        if hit is not None:
            return hit
        code = _read_upto(self.target, addr, MAX_INSN)
        return next(self._decode_bytes(code, addr, 1))

    def decode_range(self, start: int, end: int) -> list[Insn]:
        """Instructions from start until one reaches end (at least one)."""
        out: list[Insn] = []
        addr = start
        while addr < end or not out:
            hit = self._cache.get(addr)
            if hit is not None:
                out.append(hit)
                addr = hit.end
                continue
            try:
                code = _read_upto(self.target, addr, max(end - addr, 0) + MAX_INSN)
            except FaultError:
                if not out:
                    raise
                break
            out.extend(self._decode_bytes(code, addr, None, stop=max(end, addr + 1)))
            addr = out[-1].end
        return out

    def decode_count(self, start: int, count: int) -> list[Insn]:
        """count instructions from start (fewer when memory ends)."""
        out: list[Insn] = []
        addr = start
        while len(out) < count:
            try:
                insn = self.decode(addr)
            except FaultError:
                if not out:
                    raise
                break
            out.append(insn)
            addr = insn.end
        return out

    def _decode_bytes(self, code: bytes, addr: int, count: int | None, stop: int | None = None) -> Iterator[Insn]:
        """Decode code at addr, caching each instruction; (bad) where capstone gives up."""
        import capstone

        pos, made = 0, 0
        while pos < len(code) and (count is None or made < count):
            try:
                decoded = next(self._cs.disasm(code[pos:pos + MAX_INSN], addr + pos, 1), None)
            except capstone.CsError as err:
                raise CommandError(f"disassembler: {err}") from None
            insn = self._make(decoded, code, pos, addr)
            self._remember(insn)
            yield insn
            made += 1
            pos += insn.size
            if stop is not None and addr + pos >= stop:
                return

    def _make(self, decoded: Any, code: bytes, pos: int, base: int) -> Insn:
        if decoded is None:
            step = min(self._bad_step, len(code) - pos)
            return Insn(base + pos, step, "(bad)", "", bytes(code[pos:pos + step]))
        if decoded.mnemonic == "ud1" and decoded.size == 2 and len(code) - pos >= 3 and code[pos + 2] >= 0xC0:
            # capstone 5 stops before ud1's ModRM byte (0f b9 /r); the CPU and binutils take it
            modrm = code[pos + 2]
            return Insn(base + pos, 3, "ud1", f"{_R32[modrm >> 3 & 7]}, {_R32[modrm & 7]}",
                        bytes(code[pos:pos + 3]))
        target = None
        groups = set(decoded.groups)
        branch = groups & {1, 2, 7}   # CS_GRP_JUMP, CS_GRP_CALL, CS_GRP_BRANCH_RELATIVE
        if branch or (self._branch_names and decoded.mnemonic.startswith(self._branch_names)):
            m = _BRANCH_TARGET.search(decoded.op_str)
            target = int(m.group(1), 16) if m else None
        rip_ref = None
        m = _RIP_REL.search(decoded.op_str)
        if m:
            disp = int(m.group(2), 16)
            rip_ref = decoded.address + decoded.size + (disp if m.group(1) == "+" else -disp)
        return Insn(decoded.address, decoded.size, decoded.mnemonic, decoded.op_str,
                    bytes(decoded.bytes), target, rip_ref)

    def _remember(self, insn: Insn) -> None:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[insn.address] = insn

    def text(self, insn: Insn, symbolic: bool = True) -> str:
        """``mnemonic  operands``, with branch targets and rip-relative data named."""
        ops = insn.op_str
        if symbolic and insn.target is not None:
            name = self._name(insn.target)
            if name:
                ops = f"{ops} <{name}>"
        if symbolic and insn.rip_ref is not None:
            name = self._name(insn.rip_ref)
            ops = f"{ops}  # {insn.rip_ref:#x}" + (f" <{name}>" if name else "")
        return f"{insn.mnemonic:<7} {ops}".rstrip() if ops else insn.mnemonic

    def gnu(self, insn: Insn, intel: bool = False) -> Gnu:
        """The instruction as gdb (and so crash, and the oops ``Code:`` line's decoder) spells
        it: binutils' AT&T syntax (``intel``: capstone's Intel), without naming anything."""
        if intel:
            return Gnu(insn.mnemonic, insn.op_str.replace(", ", ","), insn.target, insn.rip_ref)
        if self._att is None:
            self._att = _capstone(self.target)
            import capstone

            self._att.syntax = capstone.CS_OPT_SYNTAX_ATT
        if insn.raw == b"\x66\x90":               # binutils names the 2-byte nop by its encoding
            return Gnu("xchg", "%ax,%ax")
        if insn.mnemonic == "ud1" and insn.size == 3:
            return Gnu("ud1", f"%{_R32[insn.raw[2] & 7]},%{_R32[insn.raw[2] >> 3 & 7]}")
        decoded = next(self._att.disasm(insn.raw, insn.address, 1), None) if not insn.bad else None
        if decoded is None or self.target.arch.name not in ("x86_64", "i386"):
            return Gnu(insn.mnemonic, insn.op_str, insn.target, insn.rip_ref)
        return _binutils(decoded, insn, wide=self.target.arch.ptr_size == 8)

    def _name(self, addr: int) -> str | None:
        hit = self.target.symbols.resolve(addr)
        if hit is None:
            return None
        return self.target.symbols.describe(addr)


@dataclass(frozen=True)
class Gnu:
    """An instruction in gdb's words: its mnemonic, operands, and what they refer to."""

    mnemonic: str
    operands: str
    target: int | None = None         # a direct branch's destination (printed as an address)
    rip_ref: int | None = None        # the address a rip-relative operand names


_R32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
_ACCUMULATOR = {"b": "%al", "w": "%ax", "l": "%eax", "q": "%rax"}
_BRANCHES = ("call", "jmp", "ret", "push", "pop", "lcall", "ljmp", "lret", "iret", "sysret")
_SUFFIX_SIZE = {"b": 1, "w": 2, "l": 4, "q": 8}
_OP_REG, _OP_IMM, _OP_MEM = 1, 2, 3
_GRP_JUMP, _GRP_CALL, _GRP_BRANCH_RELATIVE = 1, 2, 7


def _binutils(i: Any, insn: Insn, wide: bool) -> Gnu:
    """binutils' AT&T text from capstone's decoded operands: hex immediates masked to
    their size, ``0x0(%rax,%rax,1)`` where a displacement is encoded, ``,`` between
    operands, ``*`` before an indirect branch's operand, and the size suffix only where
    no register operand gives the size (``movq $0x0,0x20(%rsp)`` but ``mov %rsi,%r12``)."""
    words = i.mnemonic.split()
    mnem = words[-1]
    string = _string_insn(mnem, wide)
    if string is not None:
        words[-1], ops_text = string
        return Gnu(" ".join(words), ops_text)
    groups = set(i.groups)
    branch = bool(groups & {_GRP_JUMP, _GRP_CALL})
    base = i.insn_name()
    suffix = mnem[len(base):] if mnem.startswith(base) and len(mnem) == len(base) + 1 else ""
    if suffix in _SUFFIX_SIZE:
        sized = _SUFFIX_SIZE[suffix]
        if base in _BRANCHES or branch or any(o.type == _OP_REG and o.size == sized for o in i.operands):
            mnem = base
    words[-1] = mnem
    ops: list[str] = []
    relative = _GRP_BRANCH_RELATIVE in groups
    for o in i.operands:
        if o.type == _OP_REG:
            text = f"%{i.reg_name(o.reg)}"
        elif o.type == _OP_IMM:
            text = f"{o.imm & _mask(8 if wide else 4):#x}" if relative else f"${o.imm & _mask(o.size):#x}"
        elif o.type == _OP_MEM:
            text = _memory(i, o, 8 if wide else 4)
        else:
            return Gnu(i.mnemonic, i.op_str.replace(", ", ","), insn.target, insn.rip_ref)
        if branch and not relative:
            text = "*" + text
        ops.append(text)
    rip_ref = insn.rip_ref & _mask(8 if wide else 4) if insn.rip_ref is not None else None
    return Gnu(" ".join(words), ",".join(ops), insn.target, rip_ref)


def _string_insn(mnem: str, wide: bool) -> tuple[str, str] | None:
    """binutils' string instructions: implicit operands spelled out with their segments
    (``rep stos %rax,%es:(%rdi)``, ``rep movsq %ds:(%rsi),%es:(%rdi)``)."""
    if len(mnem) != 5 or mnem[-1] not in _ACCUMULATOR:
        return None
    op, size = mnem[:4], mnem[-1]
    di, si = ("%es:(%rdi)", "%ds:(%rsi)") if wide else ("%es:(%edi)", "%ds:(%esi)")
    acc = _ACCUMULATOR[size]
    return {"stos": ("stos", f"{acc},{di}"), "lods": ("lods", f"{si},{acc}"),
            "scas": ("scas", f"{di},{acc}"), "movs": (mnem, f"{si},{di}"),
            "cmps": (mnem, f"{di},{si}")}.get(op)


def _mask(size: int) -> int:
    return (1 << (8 * (size or 8))) - 1


def _memory(i: Any, o: Any, address_size: int) -> str:
    m = o.mem
    seg = f"%{i.reg_name(m.segment)}:" if m.segment else ""
    if not m.base and not m.index:
        return f"{seg}{m.disp & _mask(address_size):#x}"
    disp = ""
    if m.disp or i.disp_size:
        disp = f"-{-m.disp:#x}" if m.disp < 0 else f"{m.disp:#x}"
    inside = f"%{i.reg_name(m.base)}" if m.base else ""
    if m.index:
        inside += f",%{i.reg_name(m.index)},{m.scale}"
    return f"{seg}{disp}({inside})"


def _capstone(target: Target) -> Any:
    import capstone  # a dependency; imported when first needed, for start-up time

    try:
        arch, mode = target.arch.capstone_mode()
        cs = capstone.Cs(arch, mode)
    except (AttributeError, capstone.CsError) as err:
        raise CommandError(f"no disassembler for {target.arch.name}: {err}") from None
    cs.detail = True   # for instruction groups (is it a branch, a call?)
    return cs


def _read_upto(target: Target, addr: int, n: int) -> bytes:
    """Up to n bytes at addr: code may end at a mapping's edge, so take what is there."""
    mem = target.memory
    try:
        return mem.read(addr, n)
    except FaultError:
        pass
    lo, hi = 0, n            # bisect the readable prefix; at least one byte must be readable
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mem.readable(addr, mid):
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        raise FaultError(addr, 1, "no code here")
    return mem.read(addr, lo)


_BY_TARGET: weakref.WeakKeyDictionary[Any, Disassembler] = weakref.WeakKeyDictionary()


def disassembler_for(target: Target) -> Disassembler:
    """The target's disassembler (one per target, so its cache is shared)."""
    dis = _BY_TARGET.get(target)
    if dis is None:
        dis = _BY_TARGET[target] = Disassembler(target)
    return dis
