"""The bundled demo dumps: ``pmdb --demo`` opens a real Linux kernel crash dump.

The kernel dump is ``dump.202611221942`` from the linux-6.1-x86_64 fixtures (a
Debian 6.1 kernel that oopsed in a module; makedumpfile -c -d31, 16 MB), so
the demo works without ../shared and without any debug package. The small user
core (and its executable beside it, rebuilt by tests/data/demo/make-demo.sh)
stays for tests and as a user-space example. Callers go through demo_path(),
user_demo_path() and BANNER.
"""

from __future__ import annotations

from pathlib import Path

from pmdb.errors import FormatError

KERNEL_DUMP = "dump.202611221942"
USER_CORE = "pmdb-demo.core"

BANNER = """\
pmdb demo: a Linux 6.1 kernel that oopsed in a module (no vmlinux needed). Try:
  ::status                                    what crashed, when, on which kernel
  ::ps                                        every task, as crash's ps
  ::msgbuf                                    the kernel log (log for crash's format)
  $c                                          the panic task's stack
  ::walk task | ::print task_struct pid comm  typed walks over the kernel's BTF
  ::help                                      every command ($q quits)"""


def _bundled(name: str) -> str:
    path = Path(__file__).resolve().parent / name
    if not path.is_file():
        raise FormatError(f"the demo dump is missing from this installation ({path})")
    return str(path)


def demo_path() -> str:
    """The demo kernel dump's path inside the installed package."""
    return _bundled(KERNEL_DUMP)


def user_demo_path() -> str:
    """The small user core (a threaded program that died of SIGSEGV), its executable beside it."""
    return _bundled(USER_CORE)
