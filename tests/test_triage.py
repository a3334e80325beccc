"""pmdb triage on a fleet of real dumps, run on a real dask.distributed LocalCluster.

The fleet: the kernel lab's dumps that .ci/run makes (every amd64 kernel's sysrq and null,
5.10's bug and divide, 6.12's soft lockup, 6.1's stack overflow and kdump, 7.2's NMI, the
arm64 and i386 kernels' sysrq and null), the repeats it makes of some (``null@2``: another
boot, other KASLR offsets and pids), the shared fixtures' 6.1 dumps and user cores, and a
truncated copy of a dump made here. One cluster (two worker processes) serves the module.

Oracles: each guest's own console (the oops's ``CPU: PID: Comm:`` line, ``RIP:``/``pc :``,
``Tainted:``), its recorded ``uname``, the lab's meta.json, and the cores' gdb outputs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pmdb.triage import group, triage_run
from pmdb.triage.signature import boilerplate, fold, signature
from tests.conftest import FIXTURES, ROOT, need_fixture
from tests.kernel_truth import KERNELS, need_lab_dump

AMD64 = ["5.10.0-32-amd64", "6.1.0-57-amd64", "6.12.95+deb12-amd64", "6.12.117+deb13-amd64",
         "7.2.13+deb14-amd64"]
ARM64 = ["6.1.0-57-arm64", "6.12.117+deb13-arm64", "7.2.13+deb14-arm64"]
I386 = ["5.10.0-32-686-pae", "6.1.0-57-686-pae"]
# (release, set) of the other amd64 scenarios .ci/run makes, repeats included
MORE = [("5.10.0-32-amd64", s) for s in ("bug", "bug@2", "divide", "divide@2")] + \
       [("6.12.117+deb13-amd64", s) for s in ("softlockup", "softlockup@2")] + \
       [("6.1.0-57-amd64", s) for s in ("stackoverflow", "stackoverflow@2", "kdump")] + \
       [("7.2.13+deb14-amd64", s) for s in ("nmi", "nmi@2")] + \
       [(r, s) for r in ("6.1.0-57-amd64", "6.12.117+deb13-amd64") for s in ("sysrq@2", "null@2")]


def _lab_file(release: str) -> str:
    """The file to triage of a set: on amd64 the one tests/kernel_truth.py reads (makedumpfile's,
    but QEMU's ELF for 6.12 and 7.2, which Debian 12's makedumpfile does not know: it may
    leave the panic task's pages out), QEMU's kdump elsewhere."""
    if release.endswith("-amd64"):
        return KERNELS.get(release, "vmcore.mdf")
    return "vmcore.kdump-zlib"


def _scenario(path: str) -> str | None:
    """The way a lab guest died, from its set's name: a repeat is its scenario, and kdump is
    sysrq's crash caught by the guest's own kdump."""
    parts = Path(path).parts
    if "pmdb-lab" not in path:
        return None
    name = parts[-2].partition("@")[0]
    return "sysrq" if name == "kdump" else name


def lab_fleet() -> list[tuple[str, str, str]]:
    """(release, set, file) of every lab dump in the fleet (bench/triage.py times it too)."""
    sets = [(r, s) for r in AMD64 + ARM64 + I386 for s in ("sysrq", "null")] + MORE
    return [(r, s, "vmcore.mdf" if s == "kdump" else _lab_file(r)) for r, s in sets]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    paths = [str(need_lab_dump(release, name, file) / file) for release, name, file in lab_fleet()]
    for d in ("linux-6.1-x86_64", "linux-6.1-x86_64-nokaslr", "linux-6.1-x86_64-slub"):
        folder = need_fixture(FIXTURES / d)
        paths += sorted(str(p) for p in folder.glob("dump.*"))
    cores = need_fixture(FIXTURES / "user-cores")
    paths += sorted(str(p) for p in cores.glob("*.core"))
    # a dump cut short, as a copy that stopped mid-transfer: one error row
    cut = tmp_path_factory.mktemp("fleet") / "truncated.vmcore.mdf"
    with open(paths[3], "rb") as src:           # 6.1's null (VMCOREINFO names its kallsyms)
        cut.write_bytes(src.read(8 << 20))
    paths.append(str(cut))
    return paths


@pytest.fixture(scope="module")
def cluster() -> Any:
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as c:
        yield c


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results") / "triage.jsonl"


@pytest.fixture(scope="module")
def run(fleet: list[str], cluster: Any, results: Path) -> Any:
    return triage_run(fleet, scheduler=cluster.scheduler_address, results=results)


@pytest.fixture(scope="module")
def by_path(run: Any) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in run.records}


def test_every_dump_is_one_record_and_only_the_truncated_one_failed(fleet: list[str], run: Any) -> None:
    assert len(fleet) >= 40 and run.triaged == len(fleet) and run.reused == 0
    assert [r["path"] for r in run.records] == fleet
    errors = [r for r in run.records if r["error"]]
    assert [r["path"] for r in errors] == [fleet[-1]]
    assert "truncated.vmcore.mdf" in errors[0]["error"] and "\n" not in errors[0]["error"]
    assert "past the end of the file" in errors[0]["error"]


def _console(path: str) -> str:
    return (Path(path).parent / "console.log").read_text(errors="replace")


def test_kernel_facts_match_each_guest(by_path: dict[str, dict[str, Any]]) -> None:
    """release, hostname (the guest's uname), crashing task and CPU (the oops's own line),
    taint (the kernel's Tainted: letters) and the out-of-tree module."""
    checked = 0
    for path, rec in by_path.items():
        if _scenario(path) is None or Path(path).parent.name == "kdump":
            continue
        meta = json.loads((Path(path).parent / "meta.json").read_text())
        uname = (Path(path).parent / "truth" / "uname").read_text().split()
        assert rec["kind"] == "vmcore" and rec["release"] == meta["release"] == uname[2]
        if rec["arch"] == "i386":      # no data symbols: no utsname, tasks or taint mask
            assert rec["cpu"] is not None and rec["signature"]
            continue
        assert rec["hostname"] == uname[1]
        task = re.search(r"CPU: (\d+) (?:UID: \d+ )?PID: (\d+) Comm: (\S+) (?:Tainted: ([A-Z ]+?) +\d|Not tainted)",
                         _console(path))
        assert task is not None, path
        assert (rec["cpu"], rec["pid"], rec["comm"]) == (int(task[1]), int(task[2]), task[3]), path
        if rec["arch"] == "x86_64":    # (arm64's kallsyms has no tainted_mask to read)
            assert set((task[4] or "").replace("G", "").replace(" ", "")) <= set(rec["taint"]), path
            assert rec["oot_modules"] == ["pmdblab"] and "O" in rec["taint"]
        assert rec["time_source"] == "dump" and rec["uptime"] is not None and rec["build_id"]
        checked += 1
    assert checked >= 30


def test_faulting_function_is_the_one_the_oops_names(by_path: dict[str, dict[str, Any]]) -> None:
    """Where the kernel printed the faulting pc (RIP: / pc :), that function is the crash's;
    when the first such pc is itself interrupt plumbing (an NMI in the timer interrupt of an
    idle CPU prints the handler's RIP, then the idle loop's), the first that is not."""
    checked = 0
    for path, rec in by_path.items():
        if _scenario(path) is None or rec["arch"] == "i386":
            continue
        pcs = [fold(m) for m in re.findall(r"(?:RIP: 0010:|pc : )([\w.]+)\+0x", _console(path))]
        named = [pc for pc in pcs if not boilerplate(pc)]
        if not named:
            continue
        assert rec["function"] == named[0], path
        checked += 1
    assert checked >= 15


def test_each_scenario_forms_its_own_crash(run: Any) -> None:
    crashes, errors = group(run.records)
    assert len(errors) == 1
    scenarios_of: dict[str, set[str]] = defaultdict(set)
    families: dict[int, set[str]] = defaultdict(set)
    for c in crashes:
        for p in c.dumps:
            if (s := _scenario(p)) is not None:
                scenarios_of[c.signature_id].add(s)
                families[c.family].add(s)
    assert all(len(s) == 1 for s in scenarios_of.values()), scenarios_of
    assert all(len(s) == 1 for s in families.values()), families
    made = {s for ss in scenarios_of.values() for s in ss}
    assert made == {"sysrq", "null", "bug", "divide", "softlockup", "stackoverflow", "nmi"}
    # ranked by count, and the count is the number of dumps
    assert [c.count for c in crashes] == [len(c.dumps) for c in crashes]
    assert crashes[0].count == max(c.count for c in crashes)
    assert all(c.first_seen is not None and c.first_seen <= c.last_seen for c in crashes)


def test_a_repeat_is_the_same_crash(by_path: dict[str, dict[str, Any]]) -> None:
    """Another boot (other KASLR offsets, other pids) of the same scenario, same signature."""
    pairs = 0
    for path, rec in by_path.items():
        if "@2" not in path:
            continue
        first = by_path[path.replace("@2", "")]
        assert rec["signature_id"] == first["signature_id"], path
        assert rec["signature"] and rec["function"] == first["function"]
        pairs += 1
    assert pairs >= 9


def test_the_same_stack_on_other_kernels_shares_the_signature(by_path: dict[str, dict[str, Any]]) -> None:
    def sig(release: str, scenario: str) -> list[str]:
        return next(r["signature"] for p, r in by_path.items() if f"/{release}/{scenario}/" in p)

    sysrq = {tuple(sig(r, "sysrq")) for r in AMD64}
    assert sysrq == {("sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger", "proc_reg_write",
                      "vfs_write", "ksys_write")}
    assert sig("5.10.0-32-amd64", "null") == sig("6.1.0-57-amd64", "null") == sig("6.12.95+deb12-amd64", "null")
    assert len({tuple(sig(r, "sysrq")) for r in ARM64}) == 1
    # kdump caught the same sysrq crash: same signature as QEMU's dump of it
    assert sig("6.1.0-57-amd64", "kdump") == sig("6.1.0-57-amd64", "sysrq")


def test_user_cores(by_path: dict[str, dict[str, Any]]) -> None:
    """Signal and stack of the crashing thread: hashcrash dies in crash() called by main()."""
    cores = {p: r for p, r in by_path.items() if p.endswith(".core")}
    assert len(cores) >= 4
    for path, rec in cores.items():
        assert rec["kind"] == "core" and rec["signal"].startswith("SIGSEGV (11)"), path
        assert rec["signature"][:2] == ["crash", "main"], path
        assert rec["executable"].endswith(Path(path).name.split(".")[0]) and rec["build_id"]


def test_a_rerun_skips_what_is_done(fleet: list[str], cluster: Any, results: Path, run: Any) -> None:
    again = triage_run(fleet, scheduler=cluster.scheduler_address, results=results)
    assert (again.triaged, again.reused) == (0, len(fleet))
    assert again.records == run.records
    cut = Path(fleet[-1])
    cut.write_bytes(cut.read_bytes()[: 4 << 20])      # the file changed: triaged again
    third = triage_run(fleet, scheduler=cluster.scheduler_address, results=results)
    assert (third.triaged, third.reused) == (1, len(fleet) - 1)
    assert third.records[-1]["size"] == 4 << 20 and third.records[-1]["error"]


def test_signature_normalization() -> None:
    frames = [("delay_tsc", False), ("vpanic", False), ("panic", False), ("oops_end.cold", False),
              ("asm_exc_invalid_op", False), ("pmdblab_bug.isra.0", True), ("pmdblab_ioctl.cold", False),
              ("__x64_sys_ioctl", False), ("do_syscall_64", False), ("entry_SYSCALL_64_after_hwframe", False)]
    assert signature(frames) == ["pmdblab_bug", "pmdblab_ioctl", "sys_ioctl"]
    rec = [("panic", False), ("f.part.1.constprop.0", True)] + [("f", False)] * 40 + [("ret_from_fork", False)]
    assert signature(rec) == ["f"]


def test_a_soft_lockup_signs_by_the_stuck_context_not_the_softirq_its_tick_landed_in() -> None:
    """The 6.12 lab softlockup's stack (pmdb's bt of it), and the same lockup when the
    watchdog's tick lands in softirq work an earlier interrupt's exit ran on top of the spin
    (one of the lab's repeats did): one signature. A fault in softirq work stays its own."""
    spin = [("pmdblab_spin.isra.0", True), ("pmdblab_ioctl.cold", False), ("__x64_sys_ioctl", False),
            ("do_syscall_64", False), ("entry_SYSCALL_64_after_hwframe", False)]
    tick = [("panic", False), ("watchdog_timer_fn.cold", False), ("__hrtimer_run_queues", False),
            ("hrtimer_interrupt", False), ("__sysvec_apic_timer_interrupt", False),
            ("sysvec_apic_timer_interrupt", False), ("asm_sysvec_apic_timer_interrupt", False)]
    softirq = [("sched_balance_rq", True), ("sched_balance_softirq", False), ("handle_softirqs", False),
               ("__irq_exit_rcu", False), ("sysvec_apic_timer_interrupt", False),
               ("asm_sysvec_apic_timer_interrupt", False)]
    direct = signature(tick + spin)
    assert direct == ["pmdblab_spin", "pmdblab_ioctl", "sys_ioctl"]
    assert signature(tick + softirq + spin) == direct
    fault = [("panic", False), ("oops_end", False), ("asm_exc_page_fault", False)]
    assert signature(fault + softirq + spin)[0] == "sched_balance_rq"


def test_cli_json_and_html(fleet: list[str], cluster: Any, tmp_path: Path) -> None:
    """The subcommand on part of the fleet (a new results file, so it runs on the cluster)."""
    some = [fleet[0], fleet[1], fleet[10], fleet[11], fleet[-1]]
    report = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "pmdb", "triage", "--scheduler", cluster.scheduler_address,
                           "--results", str(tmp_path / "r.jsonl"), "--json", "--html", str(report), *some],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [r["path"] for r in doc["records"]] == some
    assert [e["path"] for e in doc["errors"]] == [fleet[-1]]
    assert sum(c["count"] for c in doc["crashes"]) == 4
    assert {c["function"] for c in doc["crashes"]} == {"sysrq_handle_crash", "pmdblab_record_hit"}
    assert "5 dumps (5 triaged" in done.stderr
    page = report.read_text()
    assert len(page) > 1 << 20 and not re.search(r"<script[^>]+src=", page)   # plotly.js inline: offline
    for c in doc["crashes"]:
        # the chart's series of the crash (one bar of its dumps' times), and its table row
        times = re.search(rf'"name":"#{c["rank"]} {c["function"]} \({c["count"]}\)","x":\[([^]]*)\],'
                          r'"type":"histogram"', page)
        assert times is not None and times[1].count(",") == c["count"] - 1
        assert " &lt; ".join(c["signature"]) in page
    assert os.path.basename(fleet[-1]) in page


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    for args in (["triage", str(tmp_path / "nothing")], ["triage", str(tmp_path)], ["triage", "--workers", "0", "x"]):
        done = subprocess.run([sys.executable, "-m", "pmdb", *args], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, args


def test_lab_repeat_sets() -> None:
    """The lab's repeats of a scenario: their own set names, the scenario's own trigger."""
    from tests.vmlab import scenarios
    from tests.vmlab.common import LabError

    (again,) = scenarios.select("null@2")
    assert (again.name, again.base, again.cmdline) == ("null@2", "null", scenarios.SCENARIOS["null"].cmdline)
    made = scenarios.with_repeats(scenarios.select("sysrq,nmi"), 3)
    assert [s.name for s in made] == ["sysrq", "sysrq@2", "sysrq@3", "nmi", "nmi@2", "nmi@3"]
    for bad in ("null@x", "null@1", "nothing@2"):
        with pytest.raises(LabError):
            scenarios.select(bad)
