"""::emulate: run code from a dump on an emulated CPU whose memory is the dump, paged in on demand.

- pager.py      DemandPager: copy-on-write pages from the dump, patches applied as pages come in
- engine.py     the Engine interface (registers, run/step, Stop, TraceEvent)
- unicorn_x86.py, x86_regs.py, watchdog.py   x86-64 and i386 on unicorn
- sparc64*.py   SPARC V9, pmdb's own interpreter (imported only when a SPARC target needs it)
- options.py    the [emulate] option table (pmdb.toml, -f file.toml, flags)
- call.py       calling conventions: arguments, stack, return sentinel; params.py: DWARF sizes
- trace.py, flow.py, report.py   the -t and -F views and the summary
- target.py     EmulatedTarget: a stopped emulated CPU as the session's target
"""
