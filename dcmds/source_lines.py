"""Where dcmds get source lines: the kernel's debug files (pmdb.os.linux.debuginfo)."""

from __future__ import annotations

from pmdb.commands import Context
from pmdb.os.linux.debuginfo import KernelDebugInfo, LineAt, debuginfo_for


def kernel_debuginfo(ctx: Context) -> KernelDebugInfo:
    """The open kernel's debug info, made once with the session's cache; modules' debug
    files are looked for in the configured debuginfo.directories."""
    from pmdb.opener import cache_of

    info = debuginfo_for(ctx.kernel, cache_of(ctx.session.config))
    info.directories = list(ctx.session.config.get("debuginfo.directories"))
    return info


def source_lines(ctx: Context) -> LineAt | None:
    """address -> (file, line), or None when the target has no debug info with lines."""
    if not ctx.is_kernel:
        return None
    info = kernel_debuginfo(ctx)
    if not info.has_lines():
        return None

    def line_at(addr: int) -> tuple[str, int] | None:
        seen = len(info.problems)
        found = info.line_at(addr)
        for problem in info.problems[seen:]:      # each damaged file is said once, when met
            ctx.out.error(problem)
        return found

    return line_at
