"""Benchmarks: ``python -m bench`` prints pmdb against gdb on the same cores (see README.md)."""
