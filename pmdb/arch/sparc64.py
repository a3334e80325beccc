"""SPARC V9, 64-bit, big-endian: register windows, %sp biased by 2047."""

from pmdb.arch import Arch, register

_WINDOW = tuple(f"{k}{i}" for k in "goli" for i in range(8))

SPARC64 = register(Arch(
    name="sparc64", bits=64, byteorder="big", elf_machine=43,
    regs=_WINDOW + ("pc", "npc", "y", "tstate"),
    pc="pc", sp="o6", fp="i6", retval="o0",
    args=("o0", "o1", "o2", "o3", "o4", "o5"),
    dwarf_regs=dict(enumerate(_WINDOW)),
    return_address_column=15,  # %o7; the return is to %o7+8
    capstone=("CS_ARCH_SPARC", "CS_MODE_BIG_ENDIAN|CS_MODE_V9"),
    unicorn=None,
    prstatus_regs=_WINDOW + ("tstate", "pc", "npc", "y"),
    page_size=8192, stack_bias=2047,
    aliases={"sp": "o6", "fp": "i6", "tpc": "pc", "tnpc": "npc"},
))
