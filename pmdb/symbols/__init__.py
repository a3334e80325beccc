"""Address <-> name: symbol tables from ELF files, kallsyms, modules."""
