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
            lines = ([""] if n else []) + [task_header(task), *_socket_lines(ctx, task_object(ctx, task))]
            ctx.out.record({"task": Hex(task.address), "pid": task.pid}, text=lines)
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


def _socket_lines(ctx: Context, task: Object) -> list[str]:
    fs = Fs(ctx.target.memory, ctx.kernel.types)
    width = 2 * ctx.target.arch.ptr_size
    rows = []
    for f in open_files(fs, task) or ():
        if f.type != "SOCK":
            continue
        s = netmodel.socket_of_inode(ctx.target.memory, ctx.kernel.types, f.inode)
        info = (f"{netmodel.FAMILIES.get(s.family, str(s.family))}:"
                f"{netmodel.SOCK_TYPES.get(s.type, str(s.type))} ")
        if s.local is not None and s.remote is not None:
            info += f" {s.local[0]}-{s.local[1]} {s.remote[0]}-{s.remote[1]}"
        rows.append(f"{f.fd:2d} {s.socket:{width}x} {s.sock:{width}x} {info}")
    return [SOCKET_HEADER, *rows] if rows else ["No open sockets."]
