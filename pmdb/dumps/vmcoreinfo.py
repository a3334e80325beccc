"""VMCOREINFO: the ``KEY=value`` text the kernel leaves for dump readers.

It is the one piece of kernel knowledge that comes with every vmcore, so it
seeds everything else: the page-table root, phys_base, KASLR's offset and, on
Linux 6.0 and later, where kallsyms lives. Values are typed by key family:
SYMBOL and KERNELOFFSET are hex, NUMBER is signed decimal (``phys_base`` is
negative under KASLR) or, for the address-sized ones newer kernels add
(``VMALLOC_START``, ``VMEMMAP_START`` on x86-64 since 6.x), ``0x`` hex;
SIZE/OFFSET/LENGTH are decimal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pmdb.errors import FormatError, SymbolError, quote

NOTE_NAME = "VMCOREINFO"

_FAMILY = re.compile(r"^(SYMBOL|SIZE|OFFSET|LENGTH|NUMBER)\((.+)\)$")


@dataclass
class VmcoreInfo:
    """Parsed VMCOREINFO; ``raw`` keeps every line's text for keys not modelled."""

    raw: dict[str, str] = field(default_factory=dict)
    symbols: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | bytes) -> VmcoreInfo:
        """Parse the note's text; a malformed value raises FormatError naming its line."""
        if isinstance(text, bytes):
            text = text.split(b"\0", 1)[0].decode("ascii", errors="replace")
        info = cls()
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise FormatError(f"VMCOREINFO line {lineno}: no '=' in {quote(line)}")
            try:
                info._add(key, value)
            except ValueError:
                raise FormatError(f"VMCOREINFO line {lineno}: bad value in {quote(line)}") from None
        return info

    def _add(self, key: str, value: str) -> None:
        self.raw[key] = value
        m = _FAMILY.match(key)
        if m:
            family, name = m.groups()
            if family == "SYMBOL":
                self.symbols[name] = int(value, 16)
            elif family == "SIZE":
                self.sizes[name] = int(value, 10)
            elif family == "OFFSET":
                self.offsets[name] = int(value, 10)
            elif family == "LENGTH":
                self.lengths[name] = int(value, 10)
            else:
                self.numbers[name] = _signed(value)
        elif key.startswith("CONFIG_"):
            self.configs[key[len("CONFIG_"):]] = value
        elif key in ("KERNELOFFSET",):
            int(value, 16)  # validate now so the accessor cannot fail later
        elif key in ("PAGESIZE", "CRASHTIME"):
            int(value, 10)

    # -- typed accessors ---------------------------------------------------

    def _get(self, table: dict[str, int], family: str, name: str) -> int:
        try:
            return table[name]
        except KeyError:
            raise SymbolError(f"vmcoreinfo has no {family}({name})") from None

    def symbol(self, name: str) -> int:
        return self._get(self.symbols, "SYMBOL", name)

    def size(self, name: str) -> int:
        return self._get(self.sizes, "SIZE", name)

    def offset(self, struct: str, member: str) -> int:
        return self._get(self.offsets, "OFFSET", f"{struct}.{member}")

    def length(self, name: str) -> int:
        return self._get(self.lengths, "LENGTH", name)

    def number(self, name: str) -> int:
        return self._get(self.numbers, "NUMBER", name)

    def has_symbol(self, name: str) -> bool:
        return name in self.symbols

    def config(self, name: str) -> bool:
        """Whether CONFIG_<name> was listed as built in (``=y``)."""
        return self.configs.get(name) == "y"

    # -- single keys ---------------------------------------------------------

    @property
    def osrelease(self) -> str:
        return self.raw.get("OSRELEASE", "")

    @property
    def build_id(self) -> str:
        return self.raw.get("BUILD-ID", "")

    @property
    def page_size(self) -> int:
        return int(self.raw.get("PAGESIZE", "4096"), 10)

    @property
    def kernel_offset(self) -> int:
        """KASLR's shift of the kernel image; 0 when absent (no KASLR, or an old kernel)."""
        value = self.raw.get("KERNELOFFSET")
        return int(value, 16) if value else 0

    @property
    def crash_time(self) -> int | None:
        """Seconds since the epoch at the crash, when kexec wrote it (QEMU dumps have none)."""
        value = self.raw.get("CRASHTIME")
        return int(value, 10) if value else None

    def number_or(self, name: str, default: int) -> int:
        return self.numbers.get(name, default)


def _signed(value: str) -> int:
    """A NUMBER: decimal, or hex with 0x (never octal: '010' is ten)."""
    digits = value.lstrip("-")
    if digits[:2].lower() == "0x":
        return int(value, 16)
    return int(value, 10)
