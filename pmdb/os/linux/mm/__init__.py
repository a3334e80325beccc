"""Kernel memory: the virtual space, layout and symbols from the dump, and what an address is."""
