"""One type model (model.py) fed by several sources: DWARF, BTF, CTF."""
