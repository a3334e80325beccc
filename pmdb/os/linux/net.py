"""Network devices and sockets: what crash's ``net`` and ``net -s`` show.

Devices are a network namespace's ``dev_base_head`` list of ``net_device.dev_list``;
their IPv4 addresses the ``in_device``'s ``ifa_list`` chain, their IPv6 ones the
``inet6_dev``'s ``addr_list``. A socket is found from an open file: its inode is the
``vfs_inode`` of a ``struct socket_alloc``, whose ``socket.sk`` is the ``struct sock``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pmdb.errors import CorruptionError
from pmdb.memory.space import AddressSpace
from pmdb.types.lists import ListLink, walk_list
from pmdb.types.registry import TypeRegistry
from pmdb.types.value import Object

MAX_ADDRESSES = 4096        # addresses of one device before its chain is called a loop

# include/linux/socket.h's families crash names, and linux/net.h's socket types
FAMILIES = {0: "UNSPEC", 1: "UNIX", 2: "INET", 3: "AX25", 4: "IPX", 5: "APPLETALK", 6: "NETROM",
            7: "BRIDGE", 8: "ATMPVC", 9: "X25", 10: "INET6", 11: "ROSE", 12: "DECnet",
            13: "NETBEUI", 14: "SECURITY/KEY", 16: "NETLINK/ROUTE", 17: "PACKET", 18: "ASH", 19: "ECONET",
            20: "ATMSVC", 22: "SNA", 23: "IRDA", 24: "PPPOX"}
SOCK_TYPES = {1: "STREAM", 2: "DGRAM ", 3: "RAW", 4: "RDM", 5: "SEQPACKET", 10: "PACKET"}


@dataclass(frozen=True)
class NetDevice:
    address: int
    name: str
    addresses: list[str]          # IPv4 first, then IPv6, as crash lists them


def _offset(types: TypeRegistry, struct: str, member: str) -> int:
    found = types.lookup(f"struct {struct}").find_member(member)
    if found is None:
        raise CorruptionError(0, f"struct {struct} has no member {member}")
    return found[1] // 8


def net_devices(mem: AddressSpace, types: TypeRegistry, net: int) -> list[NetDevice]:
    """Each device of the network namespace ``struct net`` at net, in its list's order."""
    ns = Object(mem, types.lookup("struct net"), net)
    off = _offset(types, "net_device", "dev_list")
    dev_t = types.lookup("struct net_device")
    out = []
    for node in walk_list(mem, 0, ListLink(off, off), head=ns.member("dev_base_head").address):
        dev = Object(mem, dev_t, node)
        name = dev.member("name").string().decode("utf-8", "replace")
        out.append(NetDevice(node, name, ipv4_addresses(dev) + ipv6_addresses(types, dev)))
    return out


def ipv4_addresses(dev: Object) -> list[str]:
    """The device's IPv4 addresses (``ip_ptr->ifa_list``, newest first as the kernel keeps them)."""
    addrs: list[str] = []
    in_dev = int(dev.member("ip_ptr"))
    if not in_dev:
        return addrs
    ifa = dev.member("ip_ptr").deref().member("ifa_list")
    seen: set[int] = set()
    while int(ifa):
        if int(ifa) in seen or len(seen) > MAX_ADDRESSES:
            raise CorruptionError(int(ifa), "the in_ifaddr chain loops")
        seen.add(int(ifa))
        raw = dev.memory.read(ifa.deref().member("ifa_address").address, 4)
        addrs.append(str(ipaddress.IPv4Address(raw)))
        ifa = ifa.deref().member("ifa_next")
    return addrs


def ipv6_addresses(types: TypeRegistry, dev: Object) -> list[str]:
    """The device's IPv6 addresses (``ip6_ptr->addr_list`` of ``inet6_ifaddr.if_list``)."""
    if not int(dev.member("ip6_ptr")):
        return []
    off = _offset(types, "inet6_ifaddr", "if_list")
    head = dev.member("ip6_ptr").deref().member("addr_list").address
    return [str(ipaddress.IPv6Address(dev.memory.read(node, 16)))        # addr is the first member
            for node in walk_list(dev.memory, 0, ListLink(off, off), MAX_ADDRESSES, head=head)]


AF_INET, AF_INET6 = 2, 10


@dataclass(frozen=True)
class SocketInfo:
    socket: int            # struct socket
    sock: int              # struct sock
    family: int
    type: int
    local: tuple[str, int] | None       # AF_INET and AF_INET6: (address, port)
    remote: tuple[str, int] | None
    ino: int = 0           # its inode's number: socket:[ino] in /proc/PID/fd and /proc/net/*


def socket_of_inode(mem: AddressSpace, types: TypeRegistry, inode: int) -> SocketInfo:
    """The socket whose inode is ``inode`` (S_ISSOCK): ``container_of(inode, struct
    socket_alloc, vfs_inode)``, its sock's family and type, and for AF_INET and AF_INET6 the
    bound and peer endpoints (sock_common's ``skc_rcv_saddr``/``skc_daddr`` for IPv4, its
    ``skc_v6_rcv_saddr``/``skc_v6_daddr`` for IPv6 (3.13+); ports ``inet_sport``/``skc_dport``)."""
    sock_alloc = inode - _offset(types, "socket_alloc", "vfs_inode")
    alloc = Object(mem, types.lookup("struct socket_alloc"), sock_alloc)
    socket, ino = alloc.member("socket"), int(alloc.member("vfs_inode").member("i_ino"))
    sk = int(socket.member("sk"))
    if not sk:
        return SocketInfo(socket.address, 0, 0, 0, None, None, ino)
    sock = Object(mem, types.lookup("struct sock"), sk)
    common = sock.member("__sk_common")
    family, stype = int(common.member("skc_family")), int(sock.member("sk_type"))
    if family not in (AF_INET, AF_INET6):
        return SocketInfo(socket.address, sk, family, stype, None, None, ino)
    inet = Object(mem, types.lookup("struct inet_sock"), sk)
    sport = _port(mem, inet.member("inet_sport").address)
    dport = _port(mem, common.member("skc_dport").address)
    if family == AF_INET:
        local = _ipv4(mem, common.member("skc_rcv_saddr").address)
        remote = _ipv4(mem, common.member("skc_daddr").address)
    else:
        local = _ipv6(mem, common.member("skc_v6_rcv_saddr").address)
        remote = _ipv6(mem, common.member("skc_v6_daddr").address)
    return SocketInfo(socket.address, sk, family, stype, (local, sport), (remote, dport), ino)


def crash_ipv6(address: str) -> str:
    """An IPv6 address as crash's ``net -s`` prints it: all eight groups in hex without
    leading zeros or ``::`` (``0:0:0:0:0:0:0:1``), not inet_ntop's ``::1``."""
    return ":".join(f"{int(group, 16):x}" for group in ipaddress.IPv6Address(address).exploded.split(":"))


def _ipv4(mem: AddressSpace, addr: int) -> str:
    return str(ipaddress.IPv4Address(mem.read(addr, 4)))


def _ipv6(mem: AddressSpace, addr: int) -> str:
    return str(ipaddress.IPv6Address(mem.read(addr, 16)))


def _port(mem: AddressSpace, addr: int) -> int:
    return int.from_bytes(mem.read(addr, 2), "big")        # network byte order
