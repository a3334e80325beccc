"""The x86-64 kernel's parts: address space and layout, CPU notes, ORC unwinder, stacks, paging.

``kernel.KERNEL`` gathers them behind pmdb.os.linux.arch.KernelArch.
"""
