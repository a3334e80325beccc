"""The SLUB allocator as the dump left it: caches, slabs, objects, debug tracks, stack depot.

slub.py is the model; layout.py reads struct offsets from BTF; objects, debug, audit and
scan build on it in that order; text.py puts it in words for ::whatis and the dcmds.
"""
