"""``python -m bench.drgn_log DUMP``: what drgn can do with a kernel dump and no DWARF.

drgn 0.3.0 has no BTF reader, so without a DWARF vmlinux it has kallsyms (from
VMCOREINFO) and raw memory but no types: no task list. It is timed opening the
dump, loading kallsyms and reading the printk ring; the ring is decoded by
pmdb's decoder over drgn's memory reads, as a drgn user would have to do by
hand (drgn's own printk helpers need types). Imports are kept to drgn and that
decoder so the time is drgn's.
"""

from __future__ import annotations

import sys


def main(path: str) -> int:
    import drgn
    from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

    from pmdb.dumps.vmcoreinfo import VmcoreInfo
    from pmdb.memory.space import AddressSpace, Chunk
    from pmdb.os.linux.printk.ring import crash_lines, read_log

    prog = drgn.Program(drgn.host_platform)   # QEMU's kdump has an empty utsname: drgn needs the arch
    prog.set_core_dump(path)
    prog.register_symbol_finder("kallsyms", load_vmlinux_kallsyms(prog), enable_index=0)
    info = VmcoreInfo.parse(prog["VMCOREINFO"].string_())

    class DrgnSpace(AddressSpace):
        """drgn's memory reads behind pmdb's read interface."""

        def mapping(self, addr: int, n: int) -> list[Chunk]:
            return [Chunk(addr, n, self, addr)]

        def read_at(self, offset: int, n: int) -> bytes:
            return prog.read(offset, n)

        def read(self, addr: int, n: int) -> bytes:
            return prog.read(addr, n)

    lines = [line for rec in read_log(DrgnSpace(), info) for line in crash_lines(rec)]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.write(f"{prog.symbol('start_kernel')}\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.drgn_log DUMP")
    sys.exit(main(sys.argv[1]))
