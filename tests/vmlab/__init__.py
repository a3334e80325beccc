"""pmdb's kernel lab: boots pinned Debian kernels under QEMU, records their truth, crashes them
and caches the dumps (never in git). Run `python -m tests.vmlab --help`."""
