"""The arm64 kernel's parts: address space and layout, CPU notes, frame-record unwinder, stacks, paging.

``kernel.KERNEL`` gathers them behind pmdb.os.linux.arch.KernelArch.
"""
