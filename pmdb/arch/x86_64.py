"""x86-64 (AMD64): SysV ABI."""

from pmdb.arch import Arch, register

_GPR = ("rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")

X86_64 = register(Arch(
    name="x86_64", bits=64, byteorder="little", elf_machine=62,
    regs=("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
          "r12", "r13", "r14", "r15", "rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs",
          "fs_base", "gs_base", "orig_rax"),
    pc="rip", sp="rsp", fp="rbp", retval="rax",
    args=("rdi", "rsi", "rdx", "rcx", "r8", "r9"),
    dwarf_regs=dict(enumerate(_GPR)),
    return_address_column=16,
    capstone=("CS_ARCH_X86", "CS_MODE_64"),
    unicorn=("UC_ARCH_X86", "UC_MODE_64"),
    prstatus_regs=("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
                   "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
                   "gs_base", "ds", "es", "fs", "gs"),
    aliases={"pc": "rip", "sp": "rsp", "fp": "rbp", "rflags": "eflags"},
))
