"""Kernel stacks in general: stack regions, the unwinder protocol, crash's frame selection."""
