"""Tasks and CPUs: the task list in crash's order, thread groups, each CPU's runqueue and registers."""
