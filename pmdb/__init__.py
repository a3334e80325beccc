"""pmdb: a post-mortem debugger for crash dumps, speaking the mdb language."""

__version__ = "0.1.0"
