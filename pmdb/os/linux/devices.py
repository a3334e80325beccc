"""Character and block device majors: what crash's ``dev`` lists.

Character majors are ``chrdevs[CHRDEV_MAJOR_HASH_SIZE]``, hash chains of ``struct
char_device_struct``; a major's ``struct cdev`` is its ``cdev`` member, else the one
``cdev_map``'s probes name for its major and base minor. Block majors are
``major_names[BLKDEV_MAJOR_HASH_SIZE]`` (the first of each chain, as crash reads them),
each with the gendisk of that major among the block device inodes (5.11+).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pmdb.errors import CommandError, CorruptionError
from pmdb.memory.space import AddressSpace
from pmdb.types.lists import ListLink, walk_list
from pmdb.types.registry import TypeRegistry
from pmdb.types.value import Object

MAX_DEV = 255               # CHRDEV_MAJOR_HASH_SIZE and BLKDEV_MAJOR_HASH_SIZE (include/linux/fs.h)
MINORBITS = 20
MAX_CHAIN = 1 << 12


@dataclass(frozen=True)
class Major:
    major: int
    name: str
    object: int             # struct cdev, or struct gendisk (0: none)
    ops: int                # its file_operations / block_device_operations (0: none)


class Devices:
    """Reads of the device tables of one kernel."""

    def __init__(self, mem: AddressSpace, types: TypeRegistry, lookup: Callable[[str], int | None]) -> None:
        self.mem, self.types, self.lookup = mem, types, lookup

    def _symbol(self, name: str) -> int:
        addr = self.lookup(name)
        if addr is None:
            raise CommandError(f"dev: no {name} in this kernel's symbols")
        return addr

    def char_majors(self) -> list[Major]:
        """Every registered character major range, in hash order then chain order."""
        table = self._symbol("chrdevs")
        cds_t = self.types.lookup("struct char_device_struct")
        out: list[Major] = []
        name = ""
        for i in range(MAX_DEV):
            node = self.mem.ptr(table + i * self.mem.ptr_size)
            for _ in range(MAX_CHAIN):
                if not node:
                    break
                cd = Object(self.mem, cds_t, node)
                name = cd.member("name").string().decode("utf-8", "replace") or name
                major, minor = int(cd.member("major")), int(cd.member("baseminor"))
                cdev = int(cd.member("cdev"))
                ops = self._cdev_ops(cdev) if cdev else 0
                if not ops:
                    cdev, ops = self._probe(major, minor)
                out.append(Major(major, name, cdev if ops else 0, ops))
                node = int(cd.member("next"))
            else:
                raise CorruptionError(table, f"chrdevs[{i}]'s chain does not end")
        return out

    def _cdev_ops(self, cdev: int) -> int:
        return int(Object(self.mem, self.types.lookup("struct cdev"), cdev).member("ops"))

    def _probe(self, major: int, minor: int) -> tuple[int, int]:
        """(cdev, ops) of the cdev_map probe registered for major:minor, (0, 0) without one."""
        cdev_map = self.lookup("cdev_map")
        if cdev_map is None:
            return 0, 0
        kmap = self.mem.ptr(cdev_map)
        probes = Object(self.mem, self.types.lookup("struct kobj_map"), kmap).member("probes")
        probe = probes[major % MAX_DEV]
        for _ in range(MAX_CHAIN):
            if not int(probe):
                return 0, 0
            p = probe.deref()
            dev = int(p.member("dev"))
            if dev >> MINORBITS == major and dev & ((1 << MINORBITS) - 1) == minor:
                data = int(p.member("data"))
                return data, self._cdev_ops(data)
            probe = p.member("next")
        raise CorruptionError(kmap, f"cdev_map's probes of major {major} do not end")

    def block_majors(self) -> list[Major]:
        """The first registered name of each block major hash slot, with its gendisk."""
        table = self._symbol("major_names")
        bmn_t = self.types.lookup("struct blk_major_name")
        disks = self._gendisks()
        out = []
        for i in range(MAX_DEV):
            node = self.mem.ptr(table + i * self.mem.ptr_size)
            if not node:
                continue
            b = Object(self.mem, bmn_t, node)
            major = int(b.member("major"))
            name = b.member("name").string().decode("utf-8", "replace") or "(unknown)"
            disk, ops = next(((d, o) for d, m, o in disks if m == major and o), (0, 0))
            out.append(Major(major, name, disk, ops))
        return out

    def _gendisks(self) -> list[tuple[int, int, int]]:
        """(gendisk, major, fops) of each block device inode's disk (blockdev_superblock's
        s_inodes; struct bdev_inode holds the block_device beside its vfs inode)."""
        sb_ptr = self.lookup("blockdev_superblock")
        if sb_ptr is None:
            return []
        sb = Object(self.mem, self.types.lookup("struct super_block"), self.mem.ptr(sb_ptr))
        bdev_inode = self.types.lookup("struct bdev_inode")
        i_sb_list = self.types.lookup("struct inode").find_member("i_sb_list")
        vfs_inode = bdev_inode.find_member("vfs_inode")
        if i_sb_list is None or vfs_inode is None:
            return []
        link = ListLink(i_sb_list[1] // 8, i_sb_list[1] // 8)
        out = []
        for inode in walk_list(self.mem, 0, link, head=sb.member("s_inodes").address):
            bdev = Object(self.mem, bdev_inode, inode - vfs_inode[1] // 8).member("bdev")
            disk = int(bdev.member("bd_disk"))
            if disk:
                g = Object(self.mem, self.types.lookup("struct gendisk"), disk)
                out.append((disk, int(g.member("major")), int(g.member("fops"))))
        return out
