"""Loaded kernel modules and their symbols, from each ``struct module``.

The layout of ``struct module`` changes between kernels and configs, so its
offsets come from a provider (normally the kernel's BTF through the type
registry) rather than being hard-coded. Each module keeps the symbols it
retains after loading in ``mod_kallsyms`` (an Elf64_Sym or, on i386, Elf32_Sym array, a string table
and nm-style type letters).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pmdb.errors import CorruptionError, FaultError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.kallsyms import _LETTERS
from pmdb.symbols.table import Symbol
from pmdb.types.registry import TypeRegistry

MODULE_NAME_LEN = 56  # 64 - sizeof(unsigned long)
_MAX_MODULES = 65536
_MAX_MODULE_SYMS = 1 << 20
_ELF64_SYM = struct.Struct("<IBBHQQ")
_ELF32_SYM = struct.Struct("<IIIBBH")   # st_name, st_value, st_size, st_info, st_other, st_shndx
_STT_KIND = {1: "object", 2: "func"}
_STB_BINDING = {0: "local", 1: "global", 2: "weak"}


class StructOffsets(Protocol):
    """What module walking needs from a type source: member offsets by dotted path."""

    def offsetof(self, struct_name: str, path: str) -> int:
        """Byte offset of ``path`` (``core_layout.base``) in ``struct struct_name``;
        SymbolError when the struct or member does not exist."""


class RegistryOffsets:
    """StructOffsets over a TypeRegistry (the kernel's BTF)."""

    def __init__(self, registry: TypeRegistry) -> None:
        self.registry = registry
        self._memo: dict[tuple[str, str], int] = {}

    def offsetof(self, struct_name: str, path: str) -> int:
        key = (struct_name, path)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._resolve(struct_name, path)
        return hit

    def _resolve(self, struct_name: str, path: str) -> int:
        t = self.registry.lookup(f"struct {struct_name}")
        bits = 0
        for part in path.split("."):
            found = t.find_member(part)
            if found is None:
                raise SymbolError(f"struct {struct_name} has no member {path}")
            member, off = found
            bits += off
            t = member.type
        return bits // 8


@dataclass
class KernelModule:
    """One loaded module: its ``struct module`` address, core region and symbols."""

    name: str
    address: int
    base: int = 0
    size: int = 0
    symbols: list[Symbol] = field(default_factory=list)


def module_addresses(mem: AddressSpace, modules_head: int, list_offset: int) -> Iterator[int]:
    """Each ``struct module`` on the list at ``modules_head``, bounded and cycle-checked."""
    seen = {modules_head}
    node = mem.ptr(modules_head)
    while node != modules_head:
        if node in seen or len(seen) > _MAX_MODULES:
            raise CorruptionError(node, "the module list loops without returning to its head")
        seen.add(node)
        yield node - list_offset
        node = mem.ptr(node)


def read_modules(mem: AddressSpace, modules_head: int, offsets: StructOffsets) -> list[KernelModule]:
    """Every module on the ``modules`` list with its symbols."""
    list_off = offsets.offsetof("module", "list")
    out = []
    for addr in module_addresses(mem, modules_head, list_off):
        name = mem.read(addr + offsets.offsetof("module", "name"), MODULE_NAME_LEN)
        mod = KernelModule(name.split(b"\0", 1)[0].decode("ascii", errors="replace"), addr)
        mod.base, mod.size = _core_region(mem, addr, offsets)
        try:
            mod.symbols = module_symbols(mem, addr, mod.name, offsets)
        except FaultError:
            mod.symbols = []  # the module's own tables were left out of the dump
        out.append(mod)
    return out


def _core_region(mem: AddressSpace, addr: int, offsets: StructOffsets) -> tuple[int, int]:
    """(base, size) of the module's core allocation."""
    try:
        # up to 6.3: struct module_layout core_layout
        base_off = offsets.offsetof("module", "core_layout.base")
        size_off = offsets.offsetof("module", "core_layout.size")
    except SymbolError:
        # 6.4+: struct module_memory mem[MOD_MEM_NUM_TYPES]; mem[0] is MOD_TEXT
        base_off = offsets.offsetof("module", "mem") + offsets.offsetof("module_memory", "base")
        size_off = offsets.offsetof("module", "mem") + offsets.offsetof("module_memory", "size")
    return mem.ptr(addr + base_off), mem.u32(addr + size_off)


_MAPPING_SYMBOLS = ("$x", "$d", "$a", "$t")


def module_symbols(mem: AddressSpace, addr: int, name: str, offsets: StructOffsets) -> list[Symbol]:
    """The symbols a module keeps after loading (its ``kallsyms`` tables)."""
    ks = mem.ptr(addr + offsets.offsetof("module", "kallsyms"))
    symtab = mem.ptr(ks + offsets.offsetof("mod_kallsyms", "symtab"))
    count = mem.u32(ks + offsets.offsetof("mod_kallsyms", "num_symtab"))
    strtab = mem.ptr(ks + offsets.offsetof("mod_kallsyms", "strtab"))
    if count > _MAX_MODULE_SYMS:
        raise CorruptionError(ks, f"module {name} claims {count} symbols")
    try:
        typetab = mem.ptr(ks + offsets.offsetof("mod_kallsyms", "typetab"))
        letters = mem.read(typetab, count) if count else b""
    except PmdbError:
        letters = b""  # no typetab (older kernels) or unreadable: derive kinds from st_info
    layout = _ELF64_SYM if mem.ptr_size == 8 else _ELF32_SYM        # Elf32_Sym on i386
    raw = mem.read(symtab, count * layout.size) if count else b""
    out = []
    for i, fields in enumerate(layout.iter_unpack(raw)):
        if layout is _ELF64_SYM:
            st_name, st_info, _other, shndx, value, size = fields
        else:
            st_name, value, size, st_info, _other, shndx = fields
        if not st_name or not shndx:
            continue
        sym_name = mem.cstring(strtab + st_name, 512).decode("ascii", errors="replace")
        if sym_name[:2] in _MAPPING_SYMBOLS and sym_name[2:3] in ("", "."):
            continue        # an ARM mapping symbol ($x code, $d data) names no function
        # the kernel's letter says text/data even where the ELF type is NOTYPE, but it is
        # lowercase for globals too, so the binding comes from st_info
        kind = _LETTERS.get(chr(letters[i]), ("other", ""))[0] if letters else "other"
        if kind == "other":
            kind = _STT_KIND.get(st_info & 0xF, "other")
        binding = _STB_BINDING.get(st_info >> 4, "global")
        out.append(Symbol(sym_name, value, size, kind, name, binding, chr(letters[i]) if letters else ""))
    return out


_MAX_SECTIONS = 4096


def module_sections(mem: AddressSpace, addr: int, types: TypeRegistry) -> dict[str, int]:
    """Where the kernel put each allocated section of the module at ``addr``: its
    ``sect_attrs`` (what /sys/module/NAME/sections/ shows), section name -> address. A .ko's
    DWARF is relocatable: these addresses relocate it. Empty when the kernel keeps none
    (no CONFIG_KALLSYMS, or sysfs off)."""
    offsets = RegistryOffsets(types)
    attrs = mem.ptr(addr + offsets.offsetof("module", "sect_attrs"))
    if not attrs:
        return {}
    count = mem.u32(attrs + offsets.offsetof("module_sect_attrs", "nsections"))
    if count > _MAX_SECTIONS:
        raise CorruptionError(attrs, f"the module claims {count} sections")
    first = attrs + offsets.offsetof("module_sect_attrs", "attrs")
    step = types.lookup("struct module_sect_attr").sizeof()
    name_at = offsets.offsetof("module_sect_attr", "battr.attr.name")
    address_at = offsets.offsetof("module_sect_attr", "address")
    out: dict[str, int] = {}
    for i in range(count):
        entry = first + i * step
        name = mem.cstring(mem.ptr(entry + name_at), 256).decode("ascii", "replace")
        out[name] = mem.ptr(entry + address_at)
    return out
