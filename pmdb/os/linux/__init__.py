"""The Linux kernel model: one facade (kernel.LinuxKernel) over parts grouped by subject.

- ``arch/``    the kernel's per-CPU parts behind ``KernelArch`` (x86_64/: address space
  and layout, CPU notes, ORC unwinder, stack bounds, page-table walks)
- ``mm/``      kernel memory from the dump (VMCOREINFO -> page tables -> kallsyms) and
  what an address is (::whatis)
- ``tasks/``   the task list and the CPUs
- ``stacks/``  stack regions, the unwinder protocol, crash's frame selection
- ``printk/``  the printk ring and the panic message
- ``slab/``    the SLUB allocator: caches, slabs, objects, debug tracks, stack depot
- ``sysinfo``  the kernel's variables for ::status / crash's sys

Subpackages import downwards only (arch < stacks... see tests/test_layering.py);
none imports the facade.
"""
