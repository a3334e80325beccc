"""A file's path from its dentry and mount, as the kernel's d_path builds it (minimal).

``vm`` names the file each VMA maps (``vma->vm_file``). The walk goes up ``d_parent``
from the file's dentry to the root of its mount, then on from the mount point in the
parent mount (``struct mount``: ``mnt_mountpoint``, ``mnt_parent``), until a mount that
is its own parent: the same path crash's get_pathname gives for ordinary mounts (both
start from the global root, not the task's chroot). Pseudo filesystems' ``d_dname``
names (``pipe:[N]``, ``anon_inode:...``) are not rebuilt.

The walk is bounded (PATH_MAX bytes, a visited set): a damaged dentry chain ends in a
CorruptionError.
"""

from __future__ import annotations

from pmdb.errors import CorruptionError, FaultError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.kmodules import StructOffsets

PATH_MAX = 4096
NAME_MAX = 255


def file_path(memory: AddressSpace, offsets: StructOffsets, file: int) -> str:
    """The path of the ``struct file`` at ``file`` (its f_path's mount and dentry)."""
    mnt = _ptr(memory, file + offsets.offsetof("file", "f_path.mnt"), file)
    dentry = _ptr(memory, file + offsets.offsetof("file", "f_path.dentry"), file)
    return d_path(memory, offsets, mnt, dentry)


def d_path(memory: AddressSpace, offsets: StructOffsets, vfsmount: int, dentry: int) -> str:
    """The path of ``dentry`` seen through the ``struct vfsmount`` at ``vfsmount``."""
    mnt_in_mount = offsets.offsetof("mount", "mnt")
    names: list[str] = []
    seen: set[tuple[int, int]] = set()
    length = 0
    while dentry:
        if (vfsmount, dentry) in seen:
            raise CorruptionError(dentry, "the dentry's parents loop")
        seen.add((vfsmount, dentry))
        parent = _ptr(memory, dentry + offsets.offsetof("dentry", "d_parent"), dentry)
        mnt_root = _ptr(memory, vfsmount + offsets.offsetof("vfsmount", "mnt_root"), vfsmount) if vfsmount else 0
        if dentry in (mnt_root, parent):
            if not vfsmount:
                break
            mount = vfsmount - mnt_in_mount
            up = _ptr(memory, mount + offsets.offsetof("mount", "mnt_parent"), mount)
            if up in (mount, 0):
                break                                       # the topmost mount
            dentry = _ptr(memory, mount + offsets.offsetof("mount", "mnt_mountpoint"), mount)
            vfsmount = up + mnt_in_mount
            continue
        name = dentry_name(memory, offsets, dentry)
        length += len(name) + 1
        if length > PATH_MAX:
            raise CorruptionError(dentry, f"the path is longer than PATH_MAX ({PATH_MAX})")
        names.append(name)
        dentry = parent
    return "/" + "/".join(reversed(names))


def dentry_name(memory: AddressSpace, offsets: StructOffsets, dentry: int) -> str:
    """The dentry's own name (d_name: a qstr's len and name)."""
    qstr = dentry + offsets.offsetof("dentry", "d_name")
    try:
        size = memory.u32(qstr + offsets.offsetof("qstr", "len"))
        name = memory.ptr(qstr + offsets.offsetof("qstr", "name"))
        if size > NAME_MAX:
            raise CorruptionError(dentry, f"dentry name of {size} bytes (NAME_MAX is {NAME_MAX})")
        return memory.read(name, size).decode("utf-8", "replace") if size else ""
    except FaultError as err:
        raise CorruptionError(dentry, f"cannot read the dentry's name ({err})") from None


def _ptr(memory: AddressSpace, addr: int, owner: int) -> int:
    try:
        return memory.ptr(addr)
    except FaultError as err:
        raise CorruptionError(owner, f"cannot read a path pointer ({err})") from None
