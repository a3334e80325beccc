"""VMCOREINFO parsing, checked against the fixture READMEs' facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmdb.dumps.detect import open_dump
from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FormatError, SymbolError
from tests.conftest import need_fixture
from tests.linux_vmcore import KASLR, NOKASLR, every_dump


@pytest.fixture(scope="module")
def kaslr() -> VmcoreInfo:
    return VmcoreInfo.parse(need_fixture(KASLR / "vmcoreinfo.txt").read_text())


@pytest.fixture(scope="module")
def nokaslr() -> VmcoreInfo:
    return VmcoreInfo.parse(need_fixture(NOKASLR / "vmcoreinfo.txt").read_text())


def test_single_keys_match_readme(kaslr: VmcoreInfo) -> None:
    assert kaslr.osrelease == "6.1.0-56-amd64"
    assert kaslr.build_id == "eb4fbcd037e7253717950bf2b93bd5566f47c56f"
    assert kaslr.page_size == 4096
    assert kaslr.kernel_offset == 0x9000000
    assert kaslr.crash_time is None  # README: no CRASHTIME (no kexec)


def test_families_are_typed(kaslr: VmcoreInfo) -> None:
    assert kaslr.number("phys_base") == -0x4E00000  # README: -81788928, negative
    assert kaslr.symbol("_stext") == 0xFFFFFFFF8A000000
    assert kaslr.offset("uts_namespace", "name") == 0
    assert kaslr.length("mem_section") == 4096
    assert kaslr.size("list_head") == 16
    assert kaslr.offset("list_head", "prev") == 8
    assert kaslr.number("PAGE_BUDDY_MAPCOUNT_VALUE") == -129
    assert kaslr.number("pgtable_l5_enabled") == 0


def test_kernel_offset_is_the_stext_shift(kaslr: VmcoreInfo, nokaslr: VmcoreInfo) -> None:
    assert nokaslr.kernel_offset == 0
    assert nokaslr.number("phys_base") == 0
    assert kaslr.symbol("_stext") - kaslr.kernel_offset == nokaslr.symbol("_stext") == 0xFFFFFFFF81000000


def test_missing_keys_say_which(kaslr: VmcoreInfo) -> None:
    with pytest.raises(SymbolError, match=r"^vmcoreinfo has no SYMBOL\(foo\)$"):
        kaslr.symbol("foo")
    with pytest.raises(SymbolError, match=r"OFFSET\(task_struct\.pid\)"):
        kaslr.offset("task_struct", "pid")
    with pytest.raises(SymbolError, match=r"NUMBER\(nope\)"):
        kaslr.number("nope")
    assert kaslr.number_or("nope", 7) == 7


def test_note_bytes_with_padding_and_configs() -> None:
    text = b"OSRELEASE=5.10.0\nCRASHTIME=1700000000\nCONFIG_KALLSYMS=y\nKERNELOFFSET=1e000000\n\0\0\0"
    info = VmcoreInfo.parse(text)
    assert info.osrelease == "5.10.0"
    assert info.crash_time == 1700000000
    assert info.config("KALLSYMS") and not info.config("X86_5LEVEL")
    assert info.kernel_offset == 0x1E000000


@pytest.mark.parametrize("text", ["SYMBOL(x)=zz\n", "NUMBER(y)=0xzz\n", "NUMBER(y)=010x\n", "no equals sign\n",
                                  "KERNELOFFSET=nothex\n"])
def test_bad_values_are_one_line_errors(text: str) -> None:
    with pytest.raises(FormatError, match=r"^VMCOREINFO line 1: "):
        VmcoreInfo.parse(text)


def test_error_quotes_at_most_a_little_of_the_line() -> None:
    """A damaged size_vmcoreinfo made one 53,000-character 'line' error: the quote is capped."""
    line = "x" * 53_000
    with pytest.raises(FormatError) as err:
        VmcoreInfo.parse(f"OSRELEASE=6.1\n{line}\n")
    text = str(err.value)
    assert len(text) < 200 and text.startswith("VMCOREINFO line 2: no '=' in 'xxx")
    assert text.endswith("... (53000 characters)")


def test_every_error_message_is_capped() -> None:
    from pmdb.errors import MESSAGE_LIMIT, CommandError

    text = str(CommandError("y" * 10_000))
    assert len(text) < MESSAGE_LIMIT + 40 and text.endswith("(10000 characters)")


@pytest.mark.parametrize("path", every_dump(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_dump_text_is_the_fixture_text(path: Path) -> None:
    text = need_fixture(path.parent / "vmcoreinfo.txt").read_text()
    dump = open_dump(str(need_fixture(path)))
    assert VmcoreInfo.parse(dump.vmcoreinfo).raw == VmcoreInfo.parse(text).raw


def test_numbers_decimal_negative_and_hex() -> None:
    """6.x kernels write address-sized NUMBERs in 0x hex (VMALLOC_START, from Debian's 6.12
    VMCOREINFO); others stay signed decimal, and a leading zero is not octal."""
    info = VmcoreInfo.parse("NUMBER(VMALLOC_START)=0xffffd03a00000000\nNUMBER(phys_base)=-79691776\n"
                            "NUMBER(PG_lru)=05\n")
    assert info.numbers == {"VMALLOC_START": 0xFFFFD03A00000000, "phys_base": -79691776, "PG_lru": 5}
