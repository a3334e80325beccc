"""AArch64 (ARM64): AAPCS64."""

from pmdb.arch import Arch, register

AARCH64 = register(Arch(
    name="aarch64", bits=64, byteorder="little", elf_machine=183,
    regs=tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate"),
    pc="pc", sp="sp", fp="x29", retval="x0",
    args=tuple(f"x{i}" for i in range(8)),
    dwarf_regs={**{i: f"x{i}" for i in range(31)}, 31: "sp"},
    return_address_column=30,
    capstone=("CS_ARCH_ARM64", "CS_MODE_ARM"),
    unicorn=("UC_ARCH_ARM64", "UC_MODE_ARM"),
    prstatus_regs=tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate"),
    aliases={"fp": "x29", "lr": "x30"},
))
