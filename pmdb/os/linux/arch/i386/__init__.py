"""The 32-bit x86 (i386, PAE or two-level) kernel's parts: address space and layout, CPU
notes, the frame-pointer unwinder, stacks, paging.

``kernel.KERNEL`` gathers them behind pmdb.os.linux.arch.KernelArch.
"""
