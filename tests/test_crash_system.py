"""crash's system commands (files, mount, net, irq, dev, swap, timer, sig, p) and mdb's
::pfiles and ::vnode2path: against what the kernel's own structures and the lab guests'
/proc say. Their equality with crash 8.0.6 is in tests/data/crash-golden/
linux-6.1-x86_64-system.txt, checked by tests/test_crash_commands.py."""

from __future__ import annotations

import pytest

from tests.linux_session import KASLR, run, target_for

DUMP = "dump.202611221942"


@pytest.mark.parametrize("line", [
    "files 99999", "sig 99999", "net -s 99999", "mount -n 99999", "irq 100000", "irq foo",
    "p nosuch_symbol_here", "p linux_banner", "p 1234", "p init_task.nosuch", "p (struct nosuch *)0",
    "::vnode2path", "ffff8be102a71840::vnode2path", "ffff8be102a71840::vnode2path -d -p",
    "timer -r", "dev -i", "net foo", "mount foo", "::pfiles 1 2", "files -x"])
def test_bad_input_is_one_line(line: str) -> None:
    out, err = run(target_for(KASLR, DUMP), line)
    assert not out and err.count("\n") == 1 and "internal error" not in err, (line, out, err)


def test_pfiles_and_vnode2path_agree_with_files() -> None:
    """::pfiles lists the same descriptors, struct files and paths as files; ::vnode2path
    of each struct file, of its dentry (-d) and of its f_path (-p) gives the same path."""
    t = target_for(KASLR, DUMP)
    out, err = run(t, "files 102")
    assert not err
    rows = [line.split() for line in out.splitlines()[3:]]
    assert [r[0] for r in rows] == ["0", "1", "2", "3"] and rows[3][5] == "/dev/crashdrv"
    task = t.os.find_task(102).address                           # type: ignore[attr-defined]
    out, err = run(t, f"{task:x}::pfiles")
    assert not err
    assert [line.split() for line in out.splitlines()[1:]] == [[r[0], r[4], r[1], r[5]] for r in rows]
    file_t = t.types.lookup("struct file")
    f_path = file_t.find_member("f_path")[1] // 8                # type: ignore[index]
    for fd, file, dentry, _, _, path in rows:
        for line in (f"{file}::vnode2path", f"{dentry}::vnode2path -d",
                     f"{int(file, 16) + f_path:x}::vnode2path -p"):
            out, err = run(t, line)
            assert (out, err) == (path + "\n", ""), (fd, line)
    out, _ = run(t, f"{task:x}::pfiles | ::vnode2path")          # typed handoffs: struct file
    assert out.splitlines() == [r[5] for r in rows]


def test_p_reads_memory_and_numbers_values() -> None:
    t = target_for(KASLR, DUMP)
    jiffies = t.memory.ptr(t.symbols.lookup("jiffies").addr)    # type: ignore[union-attr]
    out, err = run(t, "p jiffies", "p/x jiffies", "p -d init_task.pid")
    assert not err
    assert out.splitlines() == [f"jiffies = $1 = {jiffies}", f"$2 = {jiffies:#x}", "$3 = 0"]
    out, _ = run(t, "p init_task.fs", "p init_task.fs->users")
    fs, users = out.split()[2], out.split()[-1]
    assert out.split()[3] == "<init_fs>"
    assert int(users) > 0                  # fs_struct.users (its first member): tasks sharing it
    out, _ = run(t, f"p *(int *){fs}")
    assert out == f"$1 = {users}\n"


def _lab_x86() -> list[str]:
    from tests import kernel_truth as kt

    return list(kt.KERNELS)


def _lab_target(release: str):                                   # type: ignore[no-untyped-def]
    from pmdb.config import Config
    from pmdb.opener import open_target
    from tests import kernel_truth as kt

    folder = kt.need_lab_dump(release, "sysrq", kt.KERNELS[release])
    return folder, open_target(str(folder / kt.KERNELS[release]), config=Config())


@pytest.mark.parametrize("release", _lab_x86())
def test_mount_equals_proc_mounts(release: str) -> None:
    """Every line of the guest's /proc/mounts (device, mount point, type), in its order.
    /proc/mounts leaves out mounts above the reader's root (7.x's nullfs under rootfs);
    mount lists the whole namespace, as crash does, so those are the only extras allowed."""
    folder, t = _lab_target(release)
    truth = [line.split()[:3] for line in (folder / "truth" / "mounts").read_text().splitlines()]
    out, err = run(t, "mount")
    assert not err
    rows = [line.split() for line in out.splitlines()[1:]]
    ours = [[r[3], r[4], r[2]] for r in rows]
    extra = [r for r in ours if r not in truth]
    assert [r for r in ours if r in truth] == truth
    assert all(r[1] == "/" for r in extra), extra           # only mounts beneath the root


@pytest.mark.parametrize("release", _lab_x86())
def test_irq_names_equal_proc_interrupts(release: str) -> None:
    """irq -s's chip, flow and action names are /proc/interrupts' ("IO-APIC 2-edge timer")
    for every numbered irq both show; an irq whose action was freed between the record and
    the crash (the lab's ttyS1, opened while /proc was read) is the only one missing."""
    folder, t = _lab_target(release)     # 6.5+ (sparse_irqs): the descriptors from the maple tree
    truth = {}
    for line in (folder / "truth" / "interrupts").read_text().splitlines()[1:]:
        words = line.split()
        if words[0].rstrip(":").isdigit():
            truth[int(words[0].rstrip(":"))] = (words[-3], words[-2].split("-", 1)[1], words[-1])
    out, err = run(t, "irq -s")
    assert not err
    ours = {}
    for line in out.splitlines()[1:]:
        words = line.split()
        chip, flow = words[-2].rsplit("-", 1)
        ours[int(words[0].rstrip(":"))] = (chip, flow, words[-1])
    assert ours and all(truth[n] == v for n, v in ours.items())
    assert {n for n in truth if n not in ours} <= {3}
    out, _ = run(t, "irq")                  # the table names the same actions
    named = {int(line.split()[0]): line.split()[-1].strip('"') for line in out.splitlines()[1:]
             if line.rstrip().endswith('"')}
    assert {n: v[2] for n, v in ours.items()} == {n: named[n] for n in ours}


@pytest.mark.parametrize("release", _lab_x86())
def test_files_of_init_cross_mounts(release: str) -> None:
    """The lab's init writes to /proc/sysrq-trigger on fd 1: its path crosses the proc
    mount, and ::vnode2path of its struct file says the same."""
    _, t = _lab_target(release)
    out, err = run(t, "files 1")
    assert not err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    assert rows["0"][5] == "/dev/console" and rows["10"][5] == "/init"
    sysrq = [r for r in rows.values() if r[5] == "/proc/sysrq-trigger"]
    assert sysrq and sysrq[0][4] == "REG"
    out, _ = run(t, f"{sysrq[0][1]}::vnode2path")
    assert out == "/proc/sysrq-trigger\n"
