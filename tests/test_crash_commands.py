"""crash's commands in crash's spelling and layout, against crash 8.0.6's own output on the
6.1 fixture (crash-oracle.txt) and against what the kernel's memory says."""

from __future__ import annotations

import pytest

from tests.linux_session import KASLR, run, target_for
from tests.linux_vmcore import crash_sections

DUMP = "dump.202611221942"


def _crash(command: str) -> list[str]:
    """crash's output of exactly ``command`` in the oracle (the first time it ran)."""
    return next(lines for lines in crash_sections(KASLR, command) if lines)


@pytest.mark.parametrize("command", ["sym ffffffffc023b188", "rd -64 ffffd303c0403ea8 8",
                                     "rd -64 crashdrv_head 5"])
def test_equal_to_crash(command: str) -> None:
    out, err = run(target_for(KASLR, DUMP), command)
    assert not err
    assert out.splitlines() == _crash(command)


def test_rd_sizes_agree_with_each_other() -> None:
    """The same 32 bytes as 8 bytes, 4 halves, 2 words...: every layout holds the same
    little-endian bytes, and the ASCII column is the bytes themselves."""
    t = target_for(KASLR, DUMP)
    raw = t.memory.read(t.symbols.lookup("crashdrv_head").addr, 32)     # type: ignore[union-attr]
    for size, per_line in ((1, 16), (2, 8), (4, 4), (8, 2)):
        out, err = run(t, f"rd -{8 * size} crashdrv_head {32 // size}")
        assert not err
        values = [int(w, 16) for line in out.splitlines() for w in line.split(":  ")[1].split()[:per_line]]
        assert values == [int.from_bytes(raw[i:i + size], "little") for i in range(0, 32, size)]
        tails = [line[-16:] for line in out.splitlines()]
        assert "".join(tails) == "".join(chr(c) if 32 <= c < 127 else "." for c in raw)


def test_rd_symbols_and_decimal() -> None:
    t = target_for(KASLR, DUMP)
    out, _ = run(t, "rd -s ffffd303c0403ea8 4")
    first = out.splitlines()[0].split()
    # the return address crash's rd shows as ffffffffc023b1b4 is crashdrv_null_pointer+36
    assert first[1:] == ["crashdrv_null_pointer+36", "0000000000000003"]
    out, _ = run(t, "rd -d ffffd303c0403ea8 2")
    assert out.split()[1:] == [str(0xffffffffc023b1b4 - (1 << 64)), "3"]
    out, _ = run(t, "rd -a linux_banner")
    assert out.split(":  ", 1)[1].startswith("Linux version 6.1.0-56-amd64")


def test_sym_by_name_and_neighbours() -> None:
    t = target_for(KASLR, DUMP)
    out, err = run(t, "sym -p -n vfs_write")
    assert not err
    lines = out.splitlines()
    assert [line.split()[2] for line in lines] == ["kernel_write", "vfs_write", "ksys_read"]
    addrs = [int(line.split()[0], 16) for line in lines]
    assert addrs == sorted(addrs) and addrs[1] == t.symbols.lookup("vfs_write").addr  # type: ignore[union-attr]
    out, _ = run(t, "sym jiffies")
    assert out.split()[1:] == ["(D)", "jiffies"]
    out, err = run(t, "sym no_such_symbol_here")
    assert "symbol not found" in err and err.count("\n") == 1


@pytest.mark.parametrize("line", ["rd", "rd -u 1000", "rd -s -32 init_task", "rd -64 init_task 0t100000000",
                                  "sym", "rd nosuchsymbol"])
def test_bad_input_is_one_line(line: str) -> None:
    out, err = run(target_for(KASLR, DUMP), line)
    assert err.count("\n") == 1 and "internal error" not in err, (line, err)
