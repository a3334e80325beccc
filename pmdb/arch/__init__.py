"""CPU descriptions: registers, NT_PRSTATUS layout, pointer size and byte order, ABI,
capstone/unicorn modes.

One module per CPU defines one ``Arch``; ``by_name`` and ``by_elf_machine``
find it. Nothing here reads memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pmdb.errors import FormatError


@dataclass(frozen=True)
class Arch:
    """A CPU architecture as pmdb needs it: word size, byte order, ELF machine, registers."""

    name: str
    bits: int
    byteorder: str
    elf_machine: int
    regs: tuple[str, ...]                 # display order for $r
    pc: str
    sp: str
    fp: str | None
    retval: str                           # where a function's result lands
    args: tuple[str, ...]                 # integer argument registers (empty: stack)
    dwarf_regs: dict[int, str]            # DWARF register number -> name
    return_address_column: int            # DWARF CFI column holding the return address
    capstone: tuple[str, str]             # (CS_ARCH_*, CS_MODE_* [| ...]) attribute names
    unicorn: tuple[str, str] | None       # (UC_ARCH_*, UC_MODE_*) or None
    prstatus_regs: tuple[str, ...] = ()   # NT_PRSTATUS pr_reg order (the kernel's elf_gregset_t)
    page_size: int = 4096
    stack_bias: int = 0                   # SPARC V9 %sp is biased by 2047
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def ptr_size(self) -> int:
        return self.bits // 8

    def reg_name(self, name: str) -> str:
        """Canonical register name for a user spelling (``%o6`` -> ``o6``, ``sp`` -> ``o6``)."""
        n = name.lower().lstrip("%")
        return self.aliases.get(n, n)

    def capstone_mode(self) -> tuple[int, int]:
        import capstone

        arch = getattr(capstone, self.capstone[0])
        mode = 0
        for part in self.capstone[1].split("|"):
            mode |= getattr(capstone, part.strip())
        return arch, mode


_ARCHES: dict[str, Arch] = {}


def register(arch: Arch) -> Arch:
    _ARCHES[arch.name] = arch
    return arch


def by_name(name: str) -> Arch:
    _load_all()
    try:
        return _ARCHES[name]
    except KeyError:
        raise FormatError(f"unsupported architecture {name!r}") from None


def by_elf_machine(machine: int, bits: int) -> Arch:
    _load_all()
    same = [arch for arch in _ARCHES.values() if arch.elf_machine == machine]
    for arch in same:
        if arch.bits == bits:
            return arch
    if len(same) == 1:
        # the ELF class is the container's, not the CPU's: QEMU writes an ELF64 core for
        # an i386 guest whose memory map reaches 4 GB (EM_386 is only ever 32-bit)
        return same[0]
    raise FormatError(f"unsupported ELF machine {machine} ({bits}-bit)")


def _load_all() -> None:
    if not _ARCHES:
        from pmdb.arch import aarch64, i386, sparc64, x86_64  # noqa: F401
