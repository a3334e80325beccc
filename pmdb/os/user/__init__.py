"""User-process OS model: threads, mappings and status of a crashed process from its core."""
