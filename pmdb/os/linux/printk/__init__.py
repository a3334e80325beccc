"""The kernel log: the lockless printk ring buffer (5.10+) and the panic message in it."""
