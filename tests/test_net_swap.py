"""crash's ``net -s``, ``swap`` and ``files`` on the kernel lab's netswap dumps, against the
guest's own /proc (issue 14).

The netswap guest (tests/vmlab, ``make 6.1,6.12,7.2 netswap``) holds TCP and UDP sockets over
IPv4 and IPv6 on lo and unix sockets in one process (``labapp sockets``), a pipe and an eventfd
besides, and has pages swapped out to a 32 MB virtio disk. Just before the crash it recorded
/proc/swaps, /proc/net/{tcp,tcp6,udp,udp6,unix,if_inet6}, ``ip addr`` and ``ls -l
/proc/PID/fd`` of that process. Every socket pmdb finds must be the one /proc/net lists under
the same inode, with the same family, type, addresses and ports; ``swap`` must give
/proc/swaps' device, size and use; ``files`` must name each fd as /proc/PID/fd does.

crash 8.0.6 prints no name for a socket or a pipe in ``files`` (their dentries' names are
empty; it does not call d_dname as the kernel's d_path does): there pmdb follows the kernel,
``socket:[INODE]``, ``pipe:[INODE]``, ``anon_inode:[eventfd]``.

On the 6.1 set, ``net``, ``net -s`` and ``swap`` equal crash 8.0.6's output byte for byte
(tests/data/crash-golden/lab-6.1.0-57-amd64-netswap.txt, of one making of the set), and
``files`` does in every column but those names; on another making of the set (another boot:
other addresses, pids and inodes) the same lines with every number masked.

Read from QEMU's ELF dump: the host's makedumpfile (Debian 12's 1.7.2) leaves out slab pages
of 6.12 and later (tests/kernel_truth.py's KERNELS), and on 6.1 the makedumpfile dump is
read too. Skipped when the lab has not made the dumps; PMDB_REQUIRE_FIXTURES=1 fails instead.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.target import Target
from tests import kernel_truth as kt
from tests.linux_session import run

RELEASES = ["6.1.0-57-amd64", "6.12.117+deb13-amd64", "7.2.13+deb14-amd64"]
CASES = [(r, "vmcore.elf") for r in RELEASES] + [("6.1.0-57-amd64", "vmcore.mdf")]
IDS = [f"{r}/{f}" for r, f in CASES]
SOCK_STREAM, SOCK_DGRAM = 1, 2
_OPEN: dict[Path, Target] = {}


@pytest.fixture(params=CASES, ids=IDS)
def lab(request: pytest.FixtureRequest) -> tuple[Path, Target]:
    """(the netswap set's truth folder, its dump opened once per run)."""
    release, name = request.param
    folder = kt.need_lab_dump(release, "netswap", name=name)
    path = folder / name
    if path not in _OPEN:
        _OPEN[path] = open_target(str(path), config=Config())
    return folder / "truth", _OPEN[path]


def _records(target: Target, line: str) -> list[dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    Session(target, stdout=out, stderr=err, json_mode=True).run_line(line)
    assert "pmdb:" not in err.getvalue(), err.getvalue()
    return [r for doc in map(json.loads, out.getvalue().splitlines()) for r in doc["records"]]


def _hex_ipv4(text: str) -> str:
    """/proc/net/tcp's address: the 32-bit word in the host's (little-endian) order."""
    return str(ipaddress.IPv4Address(bytes.fromhex(text)[::-1]))


def _hex_ipv6(text: str) -> str:
    """/proc/net/tcp6's address: four 32-bit words, each in the host's order."""
    raw = bytes.fromhex(text)
    return str(ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))))


def proc_net_sockets(truth: Path) -> dict[int, tuple[str, str, tuple[str, int], tuple[str, int]]]:
    """{inode: (family, type, (local address, port), (remote address, port))} from the guest's
    /proc/net/tcp, tcp6, udp and udp6."""
    out = {}
    for name, family, stype, addr in (("net_tcp", "INET", "STREAM", _hex_ipv4),
                                      ("net_tcp6", "INET6", "STREAM", _hex_ipv6),
                                      ("net_udp", "INET", "DGRAM", _hex_ipv4),
                                      ("net_udp6", "INET6", "DGRAM", _hex_ipv6)):
        for line in (truth / name).read_text().splitlines()[1:]:
            f = line.split()
            (la, lp), (ra, rp) = (x.split(":") for x in f[1:3])
            out[int(f[9])] = (family, stype, (addr(la), int(lp, 16)), (addr(ra), int(rp, 16)))
    return out


def proc_unix_sockets(truth: Path) -> dict[int, str]:
    """{inode: type} of /proc/net/unix (Type 0001 stream, 0002 dgram)."""
    kinds = {SOCK_STREAM: "STREAM", SOCK_DGRAM: "DGRAM"}
    return {int(f[6]): kinds[int(f[4], 16)] for line in (truth / "net_unix").read_text().splitlines()[1:]
            if len(f := line.split()) >= 7}


def proc_fds(truth: Path) -> dict[int, str]:
    """{fd: link} of busybox's ``ls -l /proc/PID/fd`` ('... 3 -> socket:[10833]')."""
    return {int(m.group(1)): m.group(2) for line in (truth / "sockets-fd").read_text().splitlines()
            if (m := re.search(r" (\d+) -> (.*)$", line))}


def _pid(truth: Path) -> int:
    return int((truth / "sockets-pid").read_text())


def test_net_s_sockets_are_proc_nets(lab: tuple[Path, Target]) -> None:
    truth, target = lab
    [record] = _records(target, f"net -s {_pid(truth)}")
    inet, unix = proc_net_sockets(truth), proc_unix_sockets(truth)
    fds = proc_fds(truth)
    got = {s["inode"]: s for s in record["sockets"]}
    socket_fds = {fd: link for fd, link in fds.items() if link.startswith("socket:")}
    # every socket fd of the process, and no other
    assert sorted(s["fd"] for s in record["sockets"]) == sorted(socket_fds)
    for s in record["sockets"]:
        assert socket_fds[s["fd"]] == f"socket:[{s['inode']}]"
    # TCP over IPv4 and IPv6 (3 sockets each) and UDP (2 each): all of /proc/net's
    assert set(inet) <= set(got) and len(inet) == 10
    for inode, (family, stype, local, remote) in inet.items():
        s = got[inode]
        assert (s["family"], s["type"]) == (family, stype), inode
        assert (s["local"]["address"], s["local"]["port"]) == local, inode
        assert (s["remote"]["address"], s["remote"]["port"]) == remote, inode
    mine = {inode: kind for inode, kind in unix.items() if inode in got}
    assert len(mine) == 6
    for inode, kind in mine.items():
        assert (got[inode]["family"], got[inode]["type"]) == ("UNIX", kind)
    assert set(got) == set(inet) | set(mine)


def test_net_s_text_has_crashs_ipv6_form(lab: tuple[Path, Target]) -> None:
    """IPv6 endpoints as crash prints them: all eight groups, source-port then
    destination-port; the listener's peer is all zeros, port 0."""
    truth, target = lab
    text, err = run(target, f"net -s {_pid(truth)}")
    assert not err
    rows = [line for line in text.splitlines() if "INET6:" in line]
    assert len(rows) == 5
    assert any(re.search(r"INET6:STREAM 0:0:0:0:0:0:0:1-7002  0:0:0:0:0:0:0:0-0  $", r) for r in rows)
    assert any(re.search(r"INET6:DGRAM  0:0:0:0:0:0:0:1-\d+ 0:0:0:0:0:0:0:1-7004 ", r) for r in rows)
    assert any(re.search(r"INET:STREAM  127\.0\.0\.1-7001 0\.0\.0\.0-0$", line) for line in text.splitlines())


def test_net_lists_lo_with_both_addresses(lab: tuple[Path, Target]) -> None:
    truth, target = lab
    [record] = _records(target, "net")
    lo = [d for d in record["devices"] if d["name"] == "lo"]
    v6 = [str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0])))
          for line in (truth / "net_if_inet6").read_text().splitlines() if line.endswith(" lo")]
    v4 = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", (truth / "ip-addr").read_text())
    assert lo and lo[0]["addresses"] == v4 + v6 == ["127.0.0.1", "::1"]


def _swaps(path: Path) -> list[tuple[str, int, int, int]]:
    """(path, size kB, used kB, priority) of each /proc/swaps row."""
    rows = [line.split() for line in path.read_text().splitlines()[1:] if line.strip()]
    return [(r[0], int(r[2]), int(r[3]), int(r[4])) for r in rows]


def test_swap_is_proc_swaps(lab: tuple[Path, Target]) -> None:
    """Device, size and priority as /proc/swaps; the pages in use as /proc/swaps showed them
    when the guest saw them hold still (6.1, 6.12). 7.2 keeps freeing swap slots as tasks
    fault their pages back in (the guest's two readings, before and after listing the fds,
    differ): there the use must lie within a few such steps of the later reading, and equal
    what the dump's nr_swap_pages (kmem -i, another counter) says."""
    truth, target = lab
    [record] = _records(target, "swap")
    before, after = _swaps(truth / "swaps"), _swaps(truth / "swaps-after")
    assert len(after) == 1 and after[0][2] > 0, "the guest swapped nothing"
    got = [(s["path"], s["size_kb"], s["used_kb"], s["prio"]) for s in record["swap"]]
    path, size, used, prio = after[0]
    assert [(g[0], g[1], g[3]) for g in got] == [(path, size, prio)]
    drift = abs(before[0][2] - used)
    assert abs(got[0][2] - used) <= 4 * drift, (got, before, after)
    text, _ = run(target, "swap", "kmem -i")
    assert re.search(rf"PARTITION +{size}k +{got[0][2]}k .* {path}$", text, re.M)
    [kmem_used] = re.findall(r"SWAP USED +(\d+) ", text)
    assert int(kmem_used) * 4 == got[0][2]


def test_files_names_are_proc_fds(lab: tuple[Path, Target]) -> None:
    """Every fd as /proc/PID/fd names it: /dev/null, socket:[N], pipe:[N], anon_inode:[eventfd]."""
    truth, target = lab
    [record] = _records(target, f"files {_pid(truth)}")
    fds = proc_fds(truth)
    got = {f["fd"]: f["path"] for f in record["files"]}
    assert got == fds
    assert {link.split(":")[0] for link in fds.values()} >= {"socket", "pipe", "anon_inode"}
    types = {f["fd"]: f["type"] for f in record["files"]}
    assert {types[fd] for fd, link in fds.items() if link.startswith("socket:")} == {"SOCK"}
    assert {types[fd] for fd, link in fds.items() if link.startswith("pipe:")} == {"FIFO"}


GOLDEN = Path(__file__).parent / "data" / "crash-golden" / "lab-6.1.0-57-amd64-netswap.txt"
PSEUDO = re.compile(r"^(socket|pipe):\[\d+\]$|^anon_inode:")


def _golden() -> tuple[str, dict[str, list[str]]]:
    """(when the set was made, {command: crash's lines}) from the golden file."""
    made, command = "", ""
    out: dict[str, list[str]] = {}
    for line in GOLDEN.read_text().splitlines():
        if line.startswith("#"):
            made = made or (m.group(1) if (m := re.search(r"made (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", line)) else "")
        elif line.startswith("crash> "):
            command = line[len("crash> "):]
            out[command] = []
        else:
            out[command].append(line)
    return made, {c: lines[:-1] if lines and not lines[-1] else lines for c, lines in out.items()}


@pytest.fixture(params=["vmcore.elf", "vmcore.mdf"])
def crash_61(request: pytest.FixtureRequest) -> tuple[Target, dict[str, list[str]], bool]:
    """The 6.1 set, crash's golden output of it, and whether that output is of this very
    making of the set (else its addresses, pids and inodes are another boot's: the layout
    is compared, with every number masked, and the commands take this set's pid)."""
    folder = kt.need_lab_dump("6.1.0-57-amd64", "netswap", name=request.param)
    made, golden = _golden()
    same = json.loads((folder / "meta.json").read_text())["made"] == made
    if not same:
        pid, golden_pid = _pid(folder / "truth"), _golden_pid(golden)
        golden = {c.replace(f" {golden_pid}", f" {pid}"): lines for c, lines in golden.items()}
    path = folder / request.param
    if path not in _OPEN:
        _OPEN[path] = open_target(str(path), config=Config())
    return _OPEN[path], golden, same


def _golden_pid(golden: dict[str, list[str]]) -> int:
    return int(next(c for c in golden if c.startswith("net -s ")).split()[-1])


_NUMBER = re.compile(r"\b(?:[0-9a-f]{8,16}|\d+[kmg]?)\b")


def _masked(lines: list[str]) -> list[list[str]]:
    """Each line's words with every address and number masked (another boot's layout; a size
    too, as swap's ``316k`` used: how much a boot swapped out is its own)."""
    return [_NUMBER.sub("#", line).split() for line in lines]


def test_net_and_swap_equal_crash(crash_61: tuple[Target, dict[str, list[str]], bool]) -> None:
    target, golden, same = crash_61
    commands = [c for c in golden if not c.startswith("files")]
    assert len(commands) == 3
    for command in commands:
        out, err = run(target, command)
        assert not err, command
        if same:
            assert out.splitlines() == golden[command], command
        else:
            assert _masked(out.splitlines()) == _masked(golden[command]), command


def test_files_equals_crash_but_for_pseudo_names(crash_61: tuple[Target, dict[str, list[str]]]) -> None:
    """crash prints a socket's or pipe's dentry name (TCP, UNIX-STREAM, nothing for a pipe,
    [eventfd]); pmdb the kernel's d_path (socket:[N], pipe:[N], anon_inode:[eventfd])."""
    target, golden, same = crash_61
    [command] = [c for c in golden if c.startswith("files")]
    out, err = run(target, command)
    mine, crash = out.splitlines(), golden[command]
    assert not err and len(mine) == len(crash)

    def shown(line: str) -> str:        # another boot's set: the same rows, numbers masked
        return line if same else " ".join(_masked([line])[0])

    renamed = 0
    for a, b in zip(mine, crash, strict=True):
        path = a.split(maxsplit=5)[5:]
        if path and PSEUDO.match(path[0]):
            assert shown(" ".join(a.split()[:5])) == shown(" ".join(b.split()[:5])), a   # fd, file, dentry, inode, type
            renamed += 1
        else:
            assert shown(a) == shown(b)
    assert renamed == 19                               # 16 sockets, the pipe's two ends, the eventfd
