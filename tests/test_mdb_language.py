"""mdb's language with no target: numbers, format layout, $d, shell escapes, ::typedef.

The expected outputs are illumos mdb's, byte for byte where its own test suite
(usr/src/test/util-tests/tests/mdb) records them: the layout of ``=`` (16-column
indent, each value padded to its format's width, trailing blanks kept), the numbers
it accepts and rejects, ``$d``, ``::sizeof``, and the shell escapes' quoting.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from pmdb.session import Session

IND = " " * 16


def run(*lines: str) -> tuple[str, str]:
    """stdout and stderr of lines run in one session without a target."""
    out, err = io.StringIO(), io.StringIO()
    session = Session(None, stdout=out, stderr=err)
    for line in lines:
        session.run_line(line)
    return out.getvalue(), err.getvalue()


def pmdb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pmdb", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


# -- numbers (mdb's tst.hex, tst.base10, tst.octal, tst.binary) ---------------------------

NUMBERS = [
    (["0x123456789abcdef=K"], IND + "123456789abcdef \n"),
    (["0x123____456_789___abcd__ef=K"], IND + "123456789abcdef \n"),
    (["0x1_2_3_4_5_6_7_8_9_a_b_c_d_e_f____=K"], IND + "123456789abcdef \n"),
    (["0t16$d"], "radix = 16 base ten\n"),
    (["badcafe=K"], IND + "badcafe         \n"),
    (["bad___cafe=K"], IND + "badcafe         \n"),
    (["bad___ca_fe=E"], IND + "195939070            \n"),
    (["0t23_24_25_26=E"], IND + "23242526             \n"),
    (["0t123456=K"], IND + "1e240           \n"),
    (["0t1________2_____________________3 = E"], IND + "123                  \n"),
    (["0t10$d", "555_5555 = E", "44_44_44_44_ = E"],
     "radix = 10 base ten\n" + IND + "5555555              \n" + IND + "44444444             \n"),
    (["0o775=K", "0o7_7_5__=K", "0o7______=K"], (IND + "1fd             \n") * 2 + IND + "7               \n"),
    (["0t8$d", "0123_____456=K", "000000___________1=K"],
     "radix = 8 base ten\n" + IND + "a72e            \n" + IND + "1               \n"),
    (["0i100_0111=K", "0i1__1__0______=X"], IND + "47              \n" + IND + "6               \n"),
    (["0t2$d", "100_0001__0001=K", "1_____________0=K"],
     "radix = 2 base ten\n" + IND + "411             \n" + IND + "2               \n"),
]


@pytest.mark.parametrize("lines,expected", NUMBERS)
def test_numbers_read_as_mdb_reads_them(lines: list[str], expected: str) -> None:
    assert run(*lines) == (expected, "")


BAD_NUMBERS = ["0x_123=E", "0xzasdf=K", "0x1__p=K", "0i_=K", "0i__011=K", "0i12345=K", "0i0____3=K",
               "0t34___asdf=K", "0t_4=K", "0tp=K", "0tp__4=K", "0t4______p=K", "0o89=K", "0o7____89=K",
               "0o__324=K", "0x123456789abcdef123456789abcdef=K",
               "0x12___345678___9abcdef123456789_a_bcdef=K"]


@pytest.mark.parametrize("line", BAD_NUMBERS)
def test_bad_numbers_are_errors_not_tracebacks(line: str) -> None:
    out, err = run(line)
    assert out == ""
    assert err.startswith("pmdb: ") and "Traceback" not in err and "internal error" not in err


def test_bad_numbers_exit_nonzero() -> None:
    for line in ("0x_123=E", "0i_=K", "0x123456789abcdef123456789abcdef=K"):
        r = pmdb("-e", line)
        assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr, line


# -- '=' layout (mdb's tst.format-*) --------------------------------------------------------

def _rows(values: list[str], per: int, width: int) -> str:
    """mdb's layout: per values a line, each padded to width; a full line drops its last pad."""
    lines = []
    for i in range(0, len(values), per):
        chunk = values[i:i + per]
        text = IND + "".join(v.ljust(width) for v in chunk)
        lines.append(text if len(text) < 80 else text.rstrip())
    return "".join(line + "\n" for line in lines)


LAYOUTS = [
    ("1<<0t63,10=p", _rows(["0x8000000000000000"] * 16, 3, 19)),
    ("-1,10=J", _rows(["ffffffffffffffff"] * 16, 3, 17)),
    ("1<<0t59,10=J", _rows(["800000000000000"] * 16, 4, 16)),
    ("-1,10=e", _rows(["-1"] * 16, 3, 21)),
    ("1<<0t63,10=e", _rows(["-9223372036854775808"] * 16, 3, 21)),
    ("-1,10=G", _rows(["1777777777777777777777"] * 16, 2, 23)),
    ("1<<0t60,10=G", _rows(["100000000000000000000"] * 16, 2, 23)),
    ("1<<0t57,10=G", _rows(["10000000000000000000"] * 16, 2, 23)),
    ("0t800=E", IND + "800                  \n"),
    ("0x800=X", IND + "800             \n"),
    ("1=D", IND + "1               \n"),
    ("0i11_101=j", IND + "11101\n" + IND + "^^^ ^\n" + IND + "||| +-- bit 0 mask 0x01\n"
     + IND + "||+---- bit 2 mask 0x04\n" + IND + "|+----- bit 3 mask 0x08\n"
     + IND + "+------ bit 4 mask 0x10\n"),
    # past bit 9: numbers right-aligned, masks as wide as the highest (jfmt's 04751)
    ("0o4751=j", IND + "100111101001\n" + IND + "^  ^^^^ ^  ^\n"
     + IND + "|  |||| |  +-- bit  0 mask 0x001\n" + IND + "|  |||| +----- bit  3 mask 0x008\n"
     + IND + "|  |||+------- bit  5 mask 0x020\n" + IND + "|  ||+-------- bit  6 mask 0x040\n"
     + IND + "|  |+--------- bit  7 mask 0x080\n" + IND + "|  +---------- bit  8 mask 0x100\n"
     + IND + "+------------- bit 11 mask 0x800\n"),
    ("0xf001000b=j", IND + "11110000000000010000000000001011\n"
     + IND + "^^^^           ^            ^ ^^\n"
     + IND + "||||           |            | |+-- bit  0 mask 0x00000001\n"
     + IND + "||||           |            | +--- bit  1 mask 0x00000002\n"
     + IND + "||||           |            +----- bit  3 mask 0x00000008\n"
     + IND + "||||           +------------------ bit 16 mask 0x00010000\n"
     + IND + "|||+------------------------------ bit 28 mask 0x10000000\n"
     + IND + "||+------------------------------- bit 29 mask 0x20000000\n"
     + IND + "|+-------------------------------- bit 30 mask 0x40000000\n"
     + IND + "+--------------------------------- bit 31 mask 0x80000000\n"),
    ("0=j", IND + "0\n"),
]


@pytest.mark.parametrize("line,expected", LAYOUTS)
def test_value_layout_is_mdbs(line: str, expected: str) -> None:
    assert run(line) == (expected, "")


def test_layout_helper_matches_mdbs_recorded_output() -> None:
    # mdb's tst.format-p.mdb.out, written out: three per line, each followed by a blank
    assert _rows(["0x8000000000000000"] * 4, 3, 19) == (
        IND + "0x8000000000000000 0x8000000000000000 0x8000000000000000 \n"
        + IND + "0x8000000000000000 \n")
    # and tst.format-cap-J's four 15-digit values on a full line without a trailing blank
    assert _rows(["800000000000000"] * 4, 4, 16) == IND + "800000000000000 " * 3 + "800000000000000\n"


def test_write_and_match_formats_are_named() -> None:
    out, err = run("1=W")
    assert out == "" and "writes" in err and "only reads" in err


# -- no target: calculator, types, shell; -e exit statuses ----------------------------------

def test_no_target_calculator_exit_status() -> None:
    r = pmdb("-e", "1+2=D")
    assert (r.returncode, r.stdout, r.stderr) == (0, IND + "3               \n", "")
    r = pmdb("-e", "-1=D")            # a command starting with '-' is not an option
    assert (r.returncode, r.stdout) == (0, IND + "-1              \n")


def test_no_target_commands_that_need_one_say_so_in_one_line() -> None:
    r = pmdb("-e", "::ps")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "needs a dump" in r.stderr


def test_failures_set_the_exit_status() -> None:
    assert pmdb("-e", "::nosuchdcmd").returncode == 1
    assert pmdb("-e", "::echo ok", "-e", "::nosuchdcmd").returncode == 1
    assert pmdb("-e", "::echo ok").returncode == 0


def test_commands_from_stdin_without_a_target() -> None:
    r = subprocess.run([sys.executable, "-m", "pmdb"], input="0t10=X\n$q\n", capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, IND + "a               \n")


# -- shell escapes (mdb's shell/tst.*) ---------------------------------------------------------

SHELL = [
    ("! echo spawned", "spawned\n"),
    ("! 'echo one; echo two'", "one\ntwo\n"),
    ('! "echo hello"', "hello\n"),
    ("! \"awk 'BEGIN { print 42 }'\"", "42\n"),
    ("! 'echo \\'hi there\\''", "hi there\n"),
    ('! "echo \\\'hi there\\\'"', "hi there\n"),
    ("! 'awk \\'BEGIN { print \"ok\" }\\''", "ok\n"),
    ("::echo abc ! tr a-z A-Z", "ABC \n"),
    ("::echo alpha beta gamma ! 'awk \\'{print $3}\\''", "gamma\n"),
    ("::echo alpha beta gamma ! \"awk '{print $2}'\"", "beta\n"),
    ('::echo alpha beta gamma ! "awk \\"{print \\$1}\\""', "alpha\n"),
    ("::echo 1 2 3 ! 'awk \\'{ print $1; print $3 }\\'' | ::map .", "1\n3\n"),
    ("::echo 1 2 3 ! 'awk \\'{ s = $1 + $3; print s }\\'' | ::map .", "4\n"),
    ('::echo 1 2 3 ! "awk \\"{print \\$2}\\"" | ::map .', "2\n"),
    ("! 'echo 1; echo 2; echo 3' | ::map .", "1\n2\n3\n"),
    ("! 'echo 0t42' | ::map .", "2a\n"),
    ("! 'true' | ::map .", ""),
    ("!< echo '::echo sourced'", "sourced \n"),
    ("::echo 10 20 30 !< awk '{print \"::echo total \" $1+$2+$3}'", "total 60 \n"),
]


@pytest.mark.parametrize("line,expected", SHELL)
def test_shell_escapes_quote_as_mdb(line: str, expected: str) -> None:
    assert run(line) == (expected, "")


@pytest.mark.parametrize("line", ["::echo 1 2 3 ! 'cat' ! ::map .", "! 'echo unterminated"])
def test_bad_shell_escapes_fail_and_run_nothing(line: str) -> None:
    r = pmdb("-e", line)
    assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr


# -- ::typedef and ::sizeof (mdb's typedef/tst.*) -----------------------------------------------

DEFTYPES = ["int8_t", "int16_t", "int32_t", "int64_t", "uint8_t", "uint16_t", "uint32_t", "uint64_t",
            "intptr_t", "uintptr_t", "uchar_t", "ushort_t", "uint_t", "ulong_t", "u_longlong_t",
            "ptrdiff_t", "signed", "unsigned", "void", "char", "short", "int", "long", "_Bool", "float",
            "double"]
SIZES64 = [1, 2, 4, 8, 1, 2, 4, 8, 8, 8, 1, 2, 4, 8, 8, 8, 4, 4, 0, 1, 2, 4, 8, 1, 4, 8]
SIZES32 = [1, 2, 4, 8, 1, 2, 4, 8, 4, 4, 1, 2, 4, 4, 8, 4, 4, 4, 0, 1, 2, 4, 4, 1, 4, 8]


@pytest.mark.parametrize("model,sizes", [("LP64", SIZES64), ("LP32", SIZES32)])
def test_base_types_of_each_data_model(model: str, sizes: list[int]) -> None:
    out, err = run(f"::typedef -c {model}", *(f"::sizeof {t}" for t in DEFTYPES))
    assert err == ""
    assert out == "".join(f"sizeof ({t}) = {n}\n" for t, n in zip(DEFTYPES, sizes, strict=True))


def test_base_types_without_typedef_c() -> None:
    assert run("::sizeof uint8_t", "::sizeof unsigned long") == (
        "sizeof (uint8_t) = 1\nsizeof (unsigned long) = 8\n", "")


TYPEDEFS = [
    (["::typedef -c lp64", "::typedef \"union ringbearer { int frodo; char sam; long gandalf; }\" ringbearer_t;",
      "::sizeof ringbearer_t", "::print -at ringbearer_t", "::sizeof union ringbearer"],
     "sizeof (ringbearer_t) = 8\n0 ringbearer_t {\n    0 int frodo \n    0 char sam \n    0 long gandalf \n}\n"
     "sizeof (union ringbearer) = 8\n"),
    (["::typedef -c lp64", "::typedef 'struct list { struct list *prev; struct list *next; }' list_t",
      "::sizeof list_t", "::print -at list_t"],
     "sizeof (list_t) = 0x10\n0 list_t {\n    0 struct list *prev \n    8 struct list *next \n}\n"),
    (["::typedef -c lp64", "::typedef 'struct foo { uint8_t foo[10]; }' foo_t",
      "::typedef 'struct bar { uint8_t foo[0x10]; }' bar_t", "::sizeof foo_t", "::print -at foo_t",
      "::sizeof bar_t", "::print -at bar_t"],
     "sizeof (foo_t) = 0xa\n0 foo_t {\n    0 uint8_t [10] foo \n}\n"
     "sizeof (bar_t) = 0x10\n0 bar_t {\n    0 uint8_t [16] foo \n}\n"),
    (["::typedef -c lp64", "::typedef 'struct { uintptr_t stone[4]; void **white; char owner[]; }' gift_t",
      "::sizeof gift_t", "::print -at gift_t"],
     "sizeof (gift_t) = 0x28\n0 gift_t {\n    0 uintptr_t [4] stone \n    20 void **white \n"
     "    28 char [0] owner \n}\n"),
    (["::typedef -c lp32", "::typedef \"struct gift { uintptr_t stone[7]; void **white; }\" gift_t",
      "::sizeof gift_t", "::sizeof struct gift"],
     "sizeof (gift_t) = 0x20\nsizeof (struct gift) = 0x20\n"),
    (["::typedef \"struct { int a : 3, b : 5; unsigned c : 30; char d; union { int x; char y; }; }\" bf_t",
      "::sizeof bf_t", "::print -at bf_t"],
     "sizeof (bf_t) = 0x10\n0 bf_t {\n    0 int a :3 \n    0 int b :5 \n    4 unsigned int c :30 \n"
     "    8 char d \n    c union {\n        c int x \n        c char y \n    }\n}\n"),
    (["::typedef uint8_t rm_t", "::typedef -l", "::sizeof rm_t"], "rm_t\nsizeof (rm_t) = 1\n"),
    (["::typedef -l"], ""),
]


@pytest.mark.parametrize("lines,expected", TYPEDEFS)
def test_typedef(lines: list[str], expected: str) -> None:
    assert run(*lines) == (expected, "")


BAD_TYPEDEFS = [
    "::typedef -c lp32; ::typedef \"{ uintptr_t stone[7]; void **white; }\" gift_t",
    "::typedef lp32; ::typedef uint8_t %foo",
    "::typedef -c",
    "::typedef -c ilp16",
    "::typedef int",
    "::typedef -c lp32; ::typedef \"struct { uintptr_t stone[7]; void **stone; }\" gift_t",
    "::typedef -c lp32; ::typedef \"struct { uintptr_t stone[0]; void **white; }\" gift_t",
    "::typedef -c lp32; ::typedef \"struct { uintptr_t stone[-1]; void **white; }\" gift_t",
    "::typedef -c lp32; ::typedef \"struct { uintptr_t stone[7]; {} void {**white; }\" gift_t",
    "::typedef -c lp32; ::typedef \"struct { uintptr_t stone7]; void **white; }\" gift_t",
    "::typedef -c lp32; ::typedef struct { uintptr_t stone[7]; void **white; } gift_t",
    "::typedef -c lp32; ::typedef uint8_t rm_t extra_t",
    "::typedef \"struct { char t[]; int x; }\" t_t",
    "::typedef \"struct { nosuch_t x; }\" t_t",
    "::typedef \"struct { int x : 40; }\" t_t",
]


@pytest.mark.parametrize("line", BAD_TYPEDEFS)
def test_bad_typedefs_fail_in_one_line(line: str) -> None:
    r = pmdb("-e", line)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert all(ln.startswith("pmdb: ") or ln.startswith(" ") for ln in r.stderr.splitlines())


# -- ::echo, ::map, ::eval, $d --------------------------------------------------------------------

MISC = [
    (["::echo a b"], "a b \n"),
    (["::echo $[1+2]"], "3 \n"),
    (["0t10$d", "::echo $[0t12]", "10::map .+1"], "radix = 10 base ten\n12 \n11\n"),
    (["2a::map .*2"], "54\n"),
    (["::eval '1+2=D'"], IND + "3               \n"),
]


@pytest.mark.parametrize("lines,expected", MISC)
def test_echo_map_eval(lines: list[str], expected: str) -> None:
    out, _ = run(*lines)
    assert out == expected


def test_radix_out_of_range_is_an_error() -> None:
    out, err = run("0t17$d", "$d")
    assert "illegal radix" in err and out == "radix = 16 base ten\n"
