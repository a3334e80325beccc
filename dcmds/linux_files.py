"""Open files and mounts: crash's ``files`` and ``mount``, mdb's ``::pfiles`` and ``::vnode2path``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError
from pmdb.os.linux.fs import Fs, describe_file, mount_info, namespace_mounts, open_files, root_and_cwd
from pmdb.os.linux.tasks.tasks import Task
from pmdb.output import Column, Dec, Hex
from pmdb.types.model import type_name
from pmdb.types.value import Object

from .crash_layout import mkstring
from .linux_proc import task_header

FILES_USAGE = "[pid | task ...]"


def crash_tasks(ctx: Context, words: Sequence[Any], name: str) -> list[Task]:
    """The tasks named by crash's ``[pid | task ...]`` words (a short run of digits is a
    decimal pid, a long one a task address); the current task when none is named."""
    kernel = ctx.kernel
    if ctx.addr is not None:
        words = [ctx.addr, *words]
    if not words:
        current = ctx.target.current_thread
        if current is None or current.address is None:
            raise CommandError(f"{name}: no current task (name one: {name} PID)")
        return [kernel.find_task(current.address)]
    found = []
    for word in words:
        ident = word if isinstance(word, int) else ctx.value(str(word), crash=True, what="pid or task")
        found.append(kernel.find_task(ident))
    return found


def task_object(ctx: Context, task: Task) -> Object:
    """A task's ``struct task_struct``."""
    return Object(ctx.target.memory, ctx.kernel.types.lookup("struct task_struct"), task.address)


def _fs(ctx: Context) -> Fs:
    return Fs(ctx.target.memory, ctx.kernel.types)


def _files_header(width: int) -> str:
    return (f" FD {mkstring('FILE', width, 'center')} {mkstring('DENTRY', width, 'center')} "
            f"{mkstring('INODE', width, 'center')} TYPE PATH")


@dcmd("files", addr="optional", synopsis="crash's files: a task's root, cwd and open files",
      example="files 1", usage=FILES_USAGE)
def files(ctx: Context, *args: Any) -> None:
    """``files [PID | TASK ...]`` (the current task when none is named): crash's task header,
    the task's ROOT and CWD, then each open descriptor's struct file, dentry, inode, type
    and path (d_path, across mount points)."""
    positional, _ = parse_options("files", {}, args, FILES_USAGE)
    fs, width = _fs(ctx), 2 * ctx.target.arch.ptr_size
    for n, task in enumerate(crash_tasks(ctx, positional, "files")):
        obj = task_object(ctx, task)
        lines = ([""] if n else []) + [task_header(task)]
        dirs = root_and_cwd(fs, obj)
        if dirs is not None:
            lines.append(f"ROOT: {dirs[0]}    CWD: {dirs[1]}")
        table = open_files(fs, obj)
        if not table:
            lines.append("No open files")
        else:
            lines.append(_files_header(width))
            lines += [f"{f.fd:3d} {f.file:{width}x} {f.dentry:{width}x} {f.inode:{width}x} {f.type} {f.path}"
                      for f in table]
        records = [{"fd": Dec(f.fd), "file": Hex(f.file), "dentry": Hex(f.dentry), "inode": Hex(f.inode),
                    "type": f.type.strip(), "path": f.path} for f in table or ()]
        ctx.out.record({"task": Hex(task.address), "pid": task.pid, "root": dirs[0] if dirs else None,
                        "cwd": dirs[1] if dirs else None, "files": records}, text=lines)


PFILES_COLUMNS = (Column("fd", "FD", align=">"), Column("type", "TYPE", align=">"),
                  Column("file", "FILE"), Column("path", "PATH"))


@dcmd("pfiles", addr="optional", synopsis="a task's open files, one line per descriptor",
      example="ffff8be102a71840::pfiles", usage="[pid]")
def pfiles(ctx: Context, *args: Any) -> None:
    """mdb's ``TASK::pfiles`` (or ``::pfiles PID``; the current task without either): each
    open descriptor's number, type, ``struct file`` and path. Piped, it hands on the
    struct files (typed, so ``| ::vnode2path`` or ``| ::print f_flags`` work)."""
    positional, _ = parse_options("pfiles", {}, args, "[pid]")
    if len(positional) > 1:
        raise CommandError("pfiles: one task at a time (TASK::pfiles or ::pfiles PID)")
    [task] = crash_tasks(ctx, positional, "pfiles")
    table = open_files(_fs(ctx), task_object(ctx, task))
    if ctx.piped:
        file_t = ctx.kernel.types.lookup("struct file")
        for f in table or ():
            ctx.emit(f.file, file_t)
        return
    ctx.out.table(PFILES_COLUMNS, [[Dec(f.fd), f.type.strip(), Hex(f.file), f.path] for f in table or ()])


VNODE2PATH_USAGE = "[-d | -p]"


@dcmd("vnode2path", addr="required", synopsis="the path of a struct file, dentry or path",
      example="ffff8be102a15d00::vnode2path", usage=VNODE2PATH_USAGE)
def vnode2path(ctx: Context, *args: Any) -> None:
    """``ADDR::vnode2path``: the absolute path the kernel's d_path gives a ``struct file``
    (the default), a ``struct dentry`` (-d; through the mount of its superblock in init's
    mount namespace) or a ``struct path`` (-p). A typed address from a pipe says which."""
    _, opts = parse_options("vnode2path", {"d": "dentry", "p": "path"}, args, VNODE2PATH_USAGE)
    kind = _vnode_kind(ctx, opts)
    fs, addr = _fs(ctx), ctx.require_addr()
    if kind == "path":
        ctx.out.line(fs.path_string(fs.obj("path", addr)))
    elif kind == "dentry":
        ctx.out.line(dentry_path(ctx, fs, addr))
    else:
        f = fs.obj("file", addr)
        dentry = int(f.member("f_path").member("dentry"))
        inode = int(fs.obj("dentry", dentry).member("d_inode")) if dentry else 0
        if not dentry or inode != int(f.member("f_inode")):
            raise CommandError(f"{addr:#x} is not a struct file (its f_inode is not its dentry's "
                               "inode): -d reads a dentry, -p a struct path")
        ctx.out.line(describe_file(fs, 0, addr).path)


def _vnode_kind(ctx: Context, opts: dict[str, Any]) -> str:
    if opts.get("dentry") and opts.get("path"):
        raise CommandError("vnode2path: -d or -p, not both")
    if opts:
        return "dentry" if opts.get("dentry") else "path"
    if ctx.type is not None:
        t = ctx.type.strip()
        if t.kind == "pointer" and t.target is not None:
            t = t.target.strip()
        name = {"struct file": "file", "struct dentry": "dentry", "struct path": "path"}.get(type_name(t))
        if name is None:
            raise CommandError(f"vnode2path: a {type_name(ctx.type)} is not a file, dentry or path")
        return name
    return "file"


def dentry_path(ctx: Context, fs: Fs, dentry: int) -> str:
    """A dentry's path through the mount of its filesystem in init's mount namespace whose
    root is one of its ancestors (its path inside its filesystem when none is mounted); a
    socket's, pipe's or anon inode's own name (``socket:[INODE]``) as d_path gives it."""
    pseudo = fs.pseudo_name(dentry)
    if pseudo is not None:
        return pseudo
    d = fs.obj("dentry", dentry)
    sb = int(d.member("d_sb"))
    ancestors = fs.ancestors(dentry)
    for m in namespace_mounts(fs, init_mnt_ns(ctx)):
        vfs = fs.obj("mount", m).member("mnt")
        if int(vfs.member("mnt_sb")) == sb and int(vfs.member("mnt_root")) in ancestors:
            return fs.d_path(dentry, vfs.address)
    ctx.out.error(f"{dentry:#x}: its filesystem is not mounted in init's namespace; "
                  "the path is inside that filesystem")
    return fs.d_path(dentry, 0)


def init_mnt_ns(ctx: Context, pid: int = 1) -> int:
    """The mount namespace crash's mount reads: pid 1's (the first pid from 1 up that exists)."""
    tasks = sorted((t for t in ctx.kernel.tasks() if t.pid >= pid), key=lambda t: t.pid)
    if not tasks:
        raise CommandError("no task to take a mount namespace from")
    return mnt_ns_of(ctx, tasks[0])


def mnt_ns_of(ctx: Context, task: Task) -> int:
    """A task's mount namespace (its nsproxy's); an error for a task that has exited."""
    nsproxy = int(task_object(ctx, task).member("nsproxy"))
    if not nsproxy:
        raise CommandError(f"pid {task.pid} has no nsproxy (it has exited): no mount namespace")
    return int(Object(ctx.target.memory, ctx.kernel.types.lookup("struct nsproxy"), nsproxy).member("mnt_ns"))


MOUNT_USAGE = "[-n pid|task]"


@dcmd("mount", addr="none", synopsis="crash's mount: every mount of a mount namespace",
      example="mount", usage=MOUNT_USAGE)
def mount(ctx: Context, *args: Any) -> None:
    """``mount [-n PID|TASK]``: each mount of pid 1's mount namespace (or the named task's),
    in /proc/mounts' order: its struct mount, super_block, filesystem type, device name and
    mount point, in crash's layout. Piped, it hands on the struct mounts."""
    positional, opts = parse_options("mount", {"n:": "task"}, args, MOUNT_USAGE)
    if positional:
        raise CommandError(f"mount: searching for {positional[0]} is not in pmdb (usage: mount {MOUNT_USAGE})")
    if "task" in opts:
        [task] = crash_tasks(ctx, [opts["task"]], "mount")
        ns = mnt_ns_of(ctx, task)
    else:
        ns = init_mnt_ns(ctx)
    fs = _fs(ctx)
    mounts = [mount_info(fs, m) for m in namespace_mounts(fs, ns)]
    if ctx.piped:
        mount_t = ctx.kernel.types.lookup("struct mount")
        for m in mounts:
            ctx.emit(m.address, mount_t)
        return
    width = 2 * ctx.target.arch.ptr_size
    lines = [f"{mkstring('MOUNT', width, 'center')} {mkstring('SUPERBLK', width, 'center')} {'TYPE':<6} {'DEVNAME':<9} DIRNAME"]
    for m in mounts:
        left = f"{m.fstype:<6} {m.devname:<9} "
        while len(left) > 17 and left[-2] == " ":     # crash trims the padding of long names
            left = left[:-1]
        lines.append(f"{m.address:{width}x} {m.superblock:{width}x} {left}{m.dirname:<10}")
    records = [{"mount": Hex(m.address), "superblk": Hex(m.superblock), "type": m.fstype,
                "devname": m.devname, "dirname": m.dirname} for m in mounts]
    ctx.out.table([Column(k, k.upper()) for k in ("mount", "superblk", "type", "devname", "dirname")],
                  [list(r.values()) for r in records], text=lines)
