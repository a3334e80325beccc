"""i386: cdecl, arguments on the stack."""

from pmdb.arch import Arch, register

I386 = register(Arch(
    name="i386", bits=32, byteorder="little", elf_machine=3,
    regs=("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags",
          "cs", "ss", "ds", "es", "fs", "gs", "orig_eax"),
    pc="eip", sp="esp", fp="ebp", retval="eax", args=(),
    dwarf_regs=dict(enumerate(("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip"))),
    return_address_column=8,
    capstone=("CS_ARCH_X86", "CS_MODE_32"),
    unicorn=("UC_ARCH_X86", "UC_MODE_32"),
    prstatus_regs=("ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "ds", "es", "fs", "gs", "orig_eax",
                   "eip", "cs", "eflags", "esp", "ss"),
    aliases={"pc": "eip", "sp": "esp", "fp": "ebp"},
))
