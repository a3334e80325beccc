"""Stack unwinders: DWARF CFI, ORC, frame pointers, stack scanning."""
