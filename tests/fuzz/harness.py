"""What every fuzz target is: a name, a function of bytes, and seeds from the fixtures.

A target's function returns normally or raises a PmdbError for bad input; any other
exception, and any Session line reporting an ``internal error``, is a finding.
In-dump targets turn their bytes into patches (``decode_patches``) over regions of
a real dump's memory, so a mutation of the bytes moves, resizes or re-values the
damage; a finding is saved as the patches themselves (address and bytes), which a
regression test applies to the same fixture dump.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pmdb.config import Config
from pmdb.errors import PmdbError
from pmdb.session import Session
from pmdb.target import Target

CORPUS = Path(__file__).resolve().parent.parent / "data" / "fuzz"

Region = tuple[int, int]                 # (address, size) of memory a target may damage
Patches = dict[int, bytes]


class Finding(AssertionError):
    """What a fuzz input made pmdb do that it must not (an internal error)."""


@dataclass(frozen=True)
class FuzzTarget:
    name: str
    doc: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]] = lambda: []
    fixture: Path | None = None               # the dump it needs (skipped when absent)
    patches: Callable[[bytes], Patches] | None = None   # in-dump targets: bytes -> patches
    replay: Callable[[Patches], None] | None = None     # in-dump targets: run on patches
    base: Callable[[], Target] | None = None             # in-dump targets: the intact dump
    tags: tuple[str, ...] = field(default=())


def expect_pmdb_errors(fn: Callable[[], object]) -> None:
    """Run fn: a PmdbError is a clean rejection of bad input; anything else propagates."""
    try:
        fn()
    except PmdbError:
        pass


class FuzzSession(Session):
    """A Session that never reaches the host: no shell pipes, no files read or written by
    dcmds; a line that would do either is not run. Output lines are capped low."""

    UNSAFE_WORDS = ("!", "$<", "::eval", "::emulate", "::cont", "::step", "::target", ":c", "$q",
                    "::bp", "::set")

    def __init__(self, target: Target | None) -> None:
        config = Config({"limits.max_lines": 2000, "limits.max_read_bytes": 1 << 20,
                         "limits.max_items": 5000})
        self.out, self.err = io.StringIO(), io.StringIO()
        super().__init__(target, config=config, stdout=self.out, stderr=self.err)

    def check(self, *lines: str) -> None:
        """Run the lines; Finding when one reports an internal error."""
        for line in lines:
            if any(w in line for w in self.UNSAFE_WORDS):
                continue
            self.out.seek(0)
            self.out.truncate()
            self.run_line(line)
            text = self.err.getvalue()
            if "internal error" in text:
                raise Finding(f"{line!r}: {text.strip()[-600:]}")


def run_lines(target: Target | None, lines: Sequence[str]) -> None:
    FuzzSession(target).check(*lines)


# -- bytes -> patches over regions -------------------------------------------------------

INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x1000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
               1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 0xDEAD_0000_0000_0100,
               0xDEAD_0000_0000_0122, 0x4141_4141_4141_4141, 0xFFFF_8880_0000_0000)
MAX_PATCHES = 16


def decode_patches(data: bytes, regions: Sequence[Region]) -> Patches:
    """Records of [u32 position][u8 kind][payload]: raw bytes, an interesting word, or a
    pointer into one of the regions (a cycle, a pointer to the wrong structure)."""
    total = sum(size for _, size in regions)
    patches: Patches = {}
    pos = 0
    while pos + 5 <= len(data) and len(patches) < MAX_PATCHES and total:
        where = int.from_bytes(data[pos:pos + 4], "little") % total
        kind = data[pos + 4]
        pos += 5
        addr = _address(regions, where)
        if kind % 4 == 0:               # raw bytes: 1..8 of them
            n = 1 + (kind >> 2) % 8
            raw = data[pos:pos + n]
            pos += n
            if raw:
                patches[addr] = raw
        elif kind % 4 == 1:
            patches[addr & ~7] = INTERESTING[(kind >> 2) % len(INTERESTING)].to_bytes(8, "little")
        elif kind % 4 == 2:             # a pointer into a region, near its start or anywhere
            base, size = regions[(kind >> 2) % len(regions)]
            off = int.from_bytes(data[pos:pos + 2], "little") % max(size, 1)
            pos += 2
            patches[addr & ~7] = ((base + off) & ((1 << 64) - 1)).to_bytes(8, "little")
        else:                           # a pointer to itself: the shortest cycle
            patches[addr & ~7] = (addr & ~7).to_bytes(8, "little")
    return patches


def _address(regions: Sequence[Region], where: int) -> int:
    for base, size in regions:
        if where < size:
            return base + where
        where -= size
    raise AssertionError("position outside the regions")


def patches_to_json(patches: Patches) -> list[dict[str, str]]:
    return [{"address": f"{a:#x}", "bytes": b.hex()} for a, b in sorted(patches.items())]


def patches_from_json(items: Sequence[dict[str, str]], target: Target | None = None) -> Patches:
    """Patches as kept in the corpus: where (``address``, or ``symbol`` plus ``offset``) and
    what (hex ``bytes``, or ``pointer_to`` a symbol: its address as 8 little-endian bytes)."""
    out: Patches = {}
    for item in items:
        addr = _symbol(target, item["symbol"]) + int(str(item.get("offset", "0")), 0) \
            if "symbol" in item else int(item["address"], 16)
        if "pointer_to" in item:
            out[addr] = _symbol(target, item["pointer_to"]).to_bytes(8, "little")
        else:
            out[addr] = bytes.fromhex(item["bytes"])
    return out


def _symbol(target: Target | None, name: str) -> int:
    assert target is not None, f"a patch naming {name} needs the target"
    sym = target.symbols.lookup(name)
    assert sym is not None, name
    return sym.addr
