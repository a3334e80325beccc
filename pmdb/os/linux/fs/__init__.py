"""The kernel's filesystem objects from a dump: paths of dentries, mounts, open files.

Everything is read through the kernel's BTF types (``struct dentry``, ``struct mount``,
``struct file``...), so one reader serves every kernel with those member names; the
few layout changes are named where they are handled. Walks up a dentry chain or down a
mount list are bounded and cycle-checked: a damaged chain is an error naming where.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmdb.errors import CommandError, CorruptionError, FaultError
from pmdb.memory.space import AddressSpace
from pmdb.types.lists import ListLink, walk_list, walk_rbtree
from pmdb.types.registry import TypeRegistry
from pmdb.types.value import Object

MAX_DEPTH = 4096            # path components (PATH_MAX / 1) before a chain is called a loop
NAME_MAX = 255

# i_mode's file type bits (include/uapi/linux/stat.h), crash's four-letter names
S_IFMT = 0o170000
FILE_TYPES = {0o140000: "SOCK", 0o120000: "LNK ", 0o100000: "REG ", 0o060000: "BLK ",
              0o040000: "DIR ", 0o020000: "CHR ", 0o010000: "FIFO"}

# filesystems whose d_dname names a dentry by its inode number (net/socket.c, fs/pipe.c)
PSEUDO_INODE_NAMES = {b"sockfs": "socket", b"pipefs": "pipe"}


class Fs:
    """Typed reads of the VFS structures of one kernel (its memory and BTF types)."""

    def __init__(self, mem: AddressSpace, types: TypeRegistry) -> None:
        self.mem = mem
        self.types = types

    def obj(self, struct: str, addr: int) -> Object:
        """``struct NAME`` at addr; an error naming the struct if the kernel lacks it."""
        t = self.types.find(f"struct {struct}")
        if t is None:
            raise CommandError(f"no struct {struct} in the kernel's types")
        return Object(self.mem, t, addr)

    def mnt_offset(self) -> int:
        """Where ``struct vfsmount`` sits in ``struct mount`` (container_of, 3.3+)."""
        found = self.types.lookup("struct mount").find_member("mnt")
        assert found is not None
        return found[1] // 8

    def mount_of(self, vfsmount: int) -> Object:
        """The ``struct mount`` around a ``struct vfsmount`` pointer."""
        return self.obj("mount", vfsmount - self.mnt_offset())

    def dentry_name(self, dentry: Object) -> bytes:
        """A dentry's own name (``d_name``), at most NAME_MAX bytes."""
        qstr = dentry.member("d_name")
        length = int(qstr.member("len"))
        if length > NAME_MAX:
            raise CorruptionError(dentry.address, f"dentry name of {length} bytes")
        return self.mem.read(int(qstr.member("name")), length) if length else b""

    def d_path(self, dentry: int, vfsmount: int) -> str:
        """The absolute path of (vfsmount, dentry) as the kernel's prepend_path builds it:
        up the dentry chain, and at a mount's root on to where it is mounted in its
        parent, until the namespace's root mount (whose parent is itself). With no
        vfsmount, the path inside the dentry's own filesystem."""
        parts: list[bytes] = []
        mount = self.mount_of(vfsmount) if vfsmount else None
        for _ in range(MAX_DEPTH):
            if mount is not None and dentry == int(mount.member("mnt").member("mnt_root")):
                parent = int(mount.member("mnt_parent"))
                if parent in (mount.address, 0):
                    break                          # the namespace's root mount
                dentry = int(mount.member("mnt_mountpoint"))
                mount = self.obj("mount", parent)
                continue
            d = self.obj("dentry", dentry)
            up = int(d.member("d_parent"))
            if up in (dentry, 0):                  # a filesystem's root (IS_ROOT)
                break
            parts.append(self.dentry_name(d))
            dentry = up
        else:
            raise CorruptionError(dentry, f"a path deeper than {MAX_DEPTH} components (a loop?)")
        return "/" + "/".join(p.decode("utf-8", "replace") for p in reversed(parts))

    def ancestors(self, dentry: int) -> set[int]:
        """A dentry and every dentry above it, up to its filesystem's root."""
        chain = {dentry}
        for _ in range(MAX_DEPTH):
            up = int(self.obj("dentry", dentry).member("d_parent"))
            if up in chain or up == 0:
                return chain
            chain.add(up)
            dentry = up
        raise CorruptionError(dentry, f"a path deeper than {MAX_DEPTH} components (a loop?)")

    def path_string(self, path: Object) -> str:
        """d_path of a ``struct path`` (mnt, dentry): a pseudo file's own name where the
        kernel's d_path asks the dentry's ``d_dname`` (sockets, pipes, anon inodes)."""
        dentry = int(path.member("dentry"))
        return self.pseudo_name(dentry) or self.d_path(dentry, int(path.member("mnt")))

    def pseudo_name(self, dentry: int) -> str | None:
        """What the ``d_dname`` of sockfs, pipefs and anon_inodefs print, as /proc/PID/fd
        shows them (``socket:[INODE]``, ``pipe:[INODE]``, ``anon_inode:[eventfd]``); None for a
        dentry of another filesystem. Told by the superblock's type, whose d_op it is."""
        d = self.obj("dentry", dentry)
        sb = int(d.member("d_sb"))
        if not sb:
            return None
        fstype = self.obj("super_block", sb).member("s_type").member("name").string()
        if fstype == b"anon_inodefs":
            return "anon_inode:" + self.dentry_name(d).decode("utf-8", "replace")
        if fstype not in PSEUDO_INODE_NAMES:
            return None
        inode = int(d.member("d_inode"))
        ino = int(self.obj("inode", inode).member("i_ino")) if inode else 0
        return f"{PSEUDO_INODE_NAMES[fstype]}:[{ino}]"

    def file_path(self, file: int) -> str:
        """d_path of a ``struct file`` (its f_path): what /proc/PID/maps and fd/ show."""
        return self.path_string(self.obj("file", file).member("f_path"))

    def file_type(self, inode: int) -> str:
        """crash's TYPE column for an inode: REG, DIR, CHR, ... (UNKN for other modes)."""
        mode = int(self.obj("inode", inode).member("i_mode"))
        return FILE_TYPES.get(mode & S_IFMT, "UNKN")


@dataclass(frozen=True)
class MountInfo:
    """One mount of a namespace, as crash's mount and /proc/mounts show it."""

    address: int           # struct mount
    superblock: int
    fstype: str
    devname: str
    dirname: str


def namespace_mounts(fs: Fs, mnt_ns: int) -> list[int]:
    """The ``struct mount`` addresses of a mount namespace, in /proc/mounts' order: its
    ``list`` of ``mount.mnt_list`` up to 6.7, its ``mounts`` rbtree (``mnt_node``) since 6.8."""
    ns = fs.obj("mnt_namespace", mnt_ns)
    mount_t = fs.types.lookup("struct mount")
    has = ns.type.strip().find_member      # "mounts" sits in an anonymous struct in 7.x
    if has("list") is not None:
        found = mount_t.find_member("mnt_list")
        assert found is not None
        off = found[1] // 8
        return list(walk_list(fs.mem, 0, ListLink(off, off), head=ns.member("list").address))
    node = mount_t.find_member("mnt_node")
    if has("mounts") is None or node is None:
        raise CommandError("this kernel's mnt_namespace has neither list nor mounts")
    rb = fs.types.lookup("struct rb_node")
    left, right = (rb.find_member(m)[1] // 8 for m in ("rb_left", "rb_right"))  # type: ignore[index]
    root = fs.mem.ptr(ns.member("mounts").address)        # rb_root.rb_node
    return [n - node[1] // 8 for n in walk_rbtree(fs.mem, root, left, right)]


def mount_info(fs: Fs, mount: int) -> MountInfo:
    """Type, device name and mount point of one ``struct mount``."""
    m = fs.obj("mount", mount)
    sb = int(m.member("mnt").member("mnt_sb"))
    fstype = fs.obj("super_block", sb).member("s_type").member("name").string().decode("utf-8", "replace")
    try:
        devname = m.member("mnt_devname").string().decode("utf-8", "replace")
    except FaultError:
        devname = "(unknown)"
    parent = int(m.member("mnt_parent"))
    dirname = fs.d_path(int(m.member("mnt_mountpoint")), parent + fs.mnt_offset())
    return MountInfo(mount, sb, fstype, devname, dirname)


@dataclass(frozen=True)
class OpenFile:
    """One open file descriptor of a task (dentry and inode 0 when the file has none)."""

    fd: int
    file: int
    dentry: int
    inode: int
    type: str              # crash's TYPE: REG, DIR, CHR, ... ("?" with no inode)
    path: str


MAX_FDS = 1 << 20          # sysctl fs.nr_open's ceiling; a larger max_fds is damage


def open_files(fs: Fs, task: Object) -> list[OpenFile] | None:
    """A task's open files in fd order, from its fdtable's ``open_fds`` bitmap and ``fd``
    array (2.6.14+); None when it has no files_struct (an exited task or a kernel
    thread that dropped it)."""
    files = int(task.member("files"))
    if not files:
        return None
    fdt = fs.obj("files_struct", files).member("fdt").deref()
    max_fds = int(fdt.member("max_fds"))
    if max_fds > MAX_FDS:
        raise CorruptionError(fdt.address, f"an fdtable of {max_fds} descriptors")
    bits = 8 * fs.mem.ptr_size
    open_fds, array = int(fdt.member("open_fds")), int(fdt.member("fd"))
    out = []
    for word in range((max_fds + bits - 1) // bits):
        mask = fs.mem.read_int(open_fds + word * fs.mem.ptr_size, fs.mem.ptr_size)
        for bit in range(bits):
            fd = word * bits + bit
            if mask >> bit & 1 and fd < max_fds:
                file = fs.mem.ptr(array + fs.mem.ptr_size * fd)
                if file:
                    out.append(describe_file(fs, fd, file))
    return out


def describe_file(fs: Fs, fd: int, file: int) -> OpenFile:
    """fd, dentry, inode, type and d_path of one ``struct file``."""
    f = fs.obj("file", file)
    dentry = int(f.member("f_path").member("dentry"))
    if not dentry:
        return OpenFile(fd, file, 0, 0, "?   ", "?")
    inode = int(fs.obj("dentry", dentry).member("d_inode"))
    if not inode:
        return OpenFile(fd, file, dentry, 0, "?   ", "?")
    return OpenFile(fd, file, dentry, inode, fs.file_type(inode), fs.path_string(f.member("f_path")))


def root_and_cwd(fs: Fs, task: Object) -> tuple[str, str] | None:
    """d_path of a task's root and working directory (``fs_struct``), None without one."""
    fs_struct = int(task.member("fs"))
    if not fs_struct:
        return None
    s = fs.obj("fs_struct", fs_struct)
    return fs.path_string(s.member("root")), fs.path_string(s.member("pwd"))
