"""The cache of decoded kallsyms (pmdb/symbols/kallsyms_cache.py) on the 6.1 fixture dump:
the same answers with and without it, a damaged or forged entry discarded, and a dump with
other kallsyms bytes never reading another dump's entry."""

from __future__ import annotations

import marshal
import zlib
from array import array
from pathlib import Path

from pmdb.cache import sealed, unsealed
from pmdb.config import Config
from pmdb.opener import cache_of, open_target
from pmdb.symbols.kallsyms_cache import KIND
from pmdb.target import Target
from tests.conftest import need_fixture
from tests.linux_vmcore import KASLR

NAMES = ("init_task", "schedule", "__start_BTF", "_stext", "jiffies", "modules")


def _open(tmp_path: Path) -> Target:
    path = need_fixture(KASLR / "dump.202611221942")
    return open_target(str(path), config=Config({"cache.directory": str(tmp_path)}))


def _answers(target: Target) -> list[object]:
    """Names to addresses, addresses to names (with sizes), a repeated static name."""
    syms = target.symbols
    out: list[object] = [(n, [s.addr for s in syms.named(n)]) for n in NAMES]
    for n in NAMES[:3]:
        hit = syms.lookup(n)
        assert hit is not None
        out.append(syms.resolve(hit.addr + 1))
    out.append([s.addr for s in syms.named("__func__.0")])
    return out


def _entry(tmp_path: Path) -> Path:
    (entry,) = (tmp_path / "kallsyms").iterdir()
    return entry


def test_cached_kallsyms_answer_as_decoded_ones(tmp_path: Path) -> None:
    truth = _answers(_open(tmp_path / "none"))            # a cache of its own, written now
    first = _open(tmp_path)
    assert _answers(first) == truth
    entry = _entry(tmp_path)
    written = entry.read_bytes()
    assert _answers(_open(tmp_path)) == truth             # read from the entry
    assert _entry(tmp_path).read_bytes() == written
    assert len(truth[-1]) > 100                            # a name 405 symbols share


def test_a_damaged_entry_is_discarded_and_the_answers_stay_right(tmp_path: Path) -> None:
    truth = _answers(_open(tmp_path))
    entry = _entry(tmp_path)
    good = entry.read_bytes()
    at = good.index(b"init_task")
    entry.write_bytes(good[:at] + b"X" + good[at + 1:])  # one byte changed on disk
    assert _answers(_open(tmp_path)) == truth
    assert _entry(tmp_path).read_bytes() == good          # removed, decoded again, rewritten


def test_a_forged_entry_that_passes_its_checksum_is_still_refused(tmp_path: Path) -> None:
    truth = _answers(_open(tmp_path))
    entry = _entry(tmp_path)
    good = entry.read_bytes()
    payload = unsealed(KIND, good)
    assert payload is not None
    text, addrs, samples, hashes, in_order = marshal.loads(payload)
    assert in_order is True               # a kernel's table, as built
    names = text[1:-1].split("\0")
    i = samples[len(samples) // 2][0]

    def refused(forged: tuple[object, ...]) -> None:
        entry.write_bytes(sealed(KIND, marshal.dumps(forged)))
        assert _answers(_open(tmp_path)) == truth
        assert _entry(tmp_path).read_bytes() == good       # removed, decoded again, rewritten

    def crcs_of(typed: list[str]) -> bytes:
        return b"".join(zlib.crc32(n[1:].encode()).to_bytes(4, "little") for n in typed)

    assert crcs_of(names) == hashes
    swapped = list(names)
    swapped[i], swapped[i + 1] = names[i + 1], names[i]     # two names swapped, resealed
    refused(("\0" + "\0".join(swapped) + "\0", addrs, samples, crcs_of(swapped), in_order))
    # every name one index later (the first dropped, the last doubled), the samples moved to
    # point at the same names: their text still matches the dump, their index does not
    shifted = names[1:] + names[-1:]
    moved = [(j, start, at - len(names[0]) - 1) for j, start, at in samples if at > len(names[0]) + 1]
    refused(("\0" + "\0".join(shifted) + "\0", addrs, moved, crcs_of(shifted), in_order))
    far = array("Q", [a + 0x1000 for a in array("Q", addrs)]).tobytes()   # every address shifted
    refused((text, far, samples, hashes, in_order))
    # the names' CRCs one record later: lookups would miss their names
    refused((text, addrs, samples, hashes[-4:] + hashes[:-4], in_order))


def test_a_dump_with_other_kallsyms_bytes_has_its_own_entry(tmp_path: Path) -> None:
    from tests.fuzz.overlay import open_physically_patched

    path = need_fixture(KASLR / "dump.202611221942")
    config = Config({"cache.directory": str(tmp_path)})
    intact = open_target(str(path), config=config)
    truth = _answers(intact)
    from tests.linux_vmcore import open_kernel

    at = open_kernel(path).info.symbol("kallsyms_names") + 0x1000    # a byte inside one name
    raw = intact.memory.read(at, 1)
    phys = intact.memory.mapping(at, 1)[0].offset
    hostile = open_physically_patched(str(path), {phys: bytes([raw[0] ^ 0x01])}, cache_of(config))
    hostile.symbols.lookup("init_task")
    assert len(list((tmp_path / "kallsyms").iterdir())) == 2   # one entry per content
    assert _answers(open_target(str(path), config=config)) == truth
