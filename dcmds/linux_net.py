"""crash's ``net``: the network devices of a namespace, and with -s a task's open sockets."""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError
from pmdb.os.linux import net as netmodel
from pmdb.os.linux.fs import Fs, open_files
from pmdb.output import Hex
from pmdb.types.value import Object

from .crash_layout import mkstring
from .linux_files import crash_tasks, task_object
from .linux_proc import task_header

NET_USAGE = "[-n pid|task] | -s [pid | task ...]"
SOCKET_HEADER = "FD      SOCKET            SOCK       FAMILY:TYPE SOURCE-PORT DESTINATION-PORT"


@dcmd("net", addr="none", synopsis="crash's net: network devices and their addresses; -s a task's sockets",
      example="net", usage=NET_USAGE)
def net(ctx: Context, *args: Any) -> None:
    """``net [-n PID|TASK]``: each network device of init's network namespace (or the named
    task's), its struct net_device, name and IPv4 then IPv6 addresses. ``net -s [PID | TASK
    ...]``: the open sockets of a task (the current one by default): fd, struct socket,
    struct sock, family:type and, for IPv4, the local and remote address-port."""
    positional, opts = parse_options("net", {"s": "sockets", "n:": "task"}, args, NET_USAGE)
    if opts.get("sockets"):
        for n, task in enumerate(crash_tasks(ctx, positional, "net")):
            rows, records = _sockets(ctx, task_object(ctx, task))
            lines = ([""] if n else []) + [task_header(task), *rows]
            ctx.out.record({"task": Hex(task.address), "pid": task.pid, "sockets": records}, text=lines)
        return
    if positional:
        raise CommandError(f"net: unexpected {positional[0]} (usage: net {NET_USAGE})")
    kernel = ctx.kernel
    [task] = crash_tasks(ctx, [opts["task"]], "net") if "task" in opts else [kernel.find_task(
        kernel.lookup("init_task") or 0)]
    nsproxy = int(task_object(ctx, task).member("nsproxy"))
    if not nsproxy:
        raise CommandError(f"net: pid {task.pid} has no nsproxy (it has exited)")
    ns = int(Object(ctx.target.memory, kernel.types.lookup("struct nsproxy"), nsproxy).member("net_ns"))
    devices = netmodel.net_devices(ctx.target.memory, kernel.types, ns)
    width = 2 * ctx.target.arch.ptr_size
    lines = [f"{mkstring('NET_DEVICE', width, 'center')}  NAME       IP ADDRESS(ES)"]
    lines += [f"{d.address:{width}x}  {d.name:<10} {', '.join(d.addresses)}" for d in devices]
    ctx.out.record({"devices": [{"net_device": Hex(d.address), "name": d.name, "addresses": d.addresses}
                                for d in devices]}, text=lines)


def _sockets(ctx: Context, task: Object) -> tuple[list[str], list[dict[str, Any]]]:
    """crash's net -s rows of a task's sockets, and the same sockets as records."""
    fs = Fs(ctx.target.memory, ctx.kernel.types)
    width = 2 * ctx.target.arch.ptr_size
    rows, records = [], []
    for f in open_files(fs, task) or ():
        if f.type != "SOCK":
            continue
        s = netmodel.socket_of_inode(ctx.target.memory, ctx.kernel.types, f.inode)
        family = netmodel.FAMILIES.get(s.family, str(s.family))
        stype = netmodel.SOCK_TYPES.get(s.type, str(s.type))
        rows.append(f"{f.fd:2d} {s.socket:{width}x} {s.sock:{width}x} {family}:{stype} {_endpoints(s)}")
        records.append({"fd": f.fd, "socket": Hex(s.socket), "sock": Hex(s.sock), "family": family,
                        "type": stype.strip(), "inode": s.ino,
                        "local": _endpoint(s.local), "remote": _endpoint(s.remote)})
    return ([SOCKET_HEADER, *rows] if rows else ["No open sockets."]), records


def _endpoints(s: netmodel.SocketInfo) -> str:
    """crash's SOURCE-PORT DESTINATION-PORT: IPv4 as `` a.b.c.d-port a.b.c.d-port``; IPv6
    with every group (``0:0:0:0:0:0:0:1-7002``), the source right-aligned in 12 columns and
    the destination centred under the source's width."""
    if s.local is None or s.remote is None:
        return ""
    if s.family == netmodel.AF_INET:
        return f" {s.local[0]}-{s.local[1]} {s.remote[0]}-{s.remote[1]}"
    src = f"{netmodel.crash_ipv6(s.local[0])}-{s.local[1]}"
    dst = f"{netmodel.crash_ipv6(s.remote[0])}-{s.remote[1]}"
    return f"{src:>12} {mkstring(dst, len(src), 'center')}"


def _endpoint(end: tuple[str, int] | None) -> dict[str, Any] | None:
    return None if end is None else {"address": end[0], "port": end[1]}
