"""pmdb's Python API: open a dump and ask it questions from a script or a notebook.

    import pmdb
    prog = pmdb.open("vmcore")                 # or a user core; debug files after the path
    init = prog["init_task"]                   # a global, typed by its debug info
    init.comm.string_()                        # b'swapper/0'
    for task in prog.tasks():                  # struct task_struct Objects, crash's ps order
        print(int(task.pid), task.comm.string_().decode())
    prog.stack(102)                            # a task's frames: pc, sp, function, source line
    prog.object(0xffff8be102a71840, "struct task_struct").pid
    prog.run("::ps")                           # any command line: rows as dicts
    prog.msgbuf()[-1]                          # the kernel log
    prog.threads()                             # a user core's threads (a kernel's tasks)

``repr(obj)`` of an Object is ``::print``'s text. Objects, stacks and command results
show as tables in rich (``rich.print(prog.run("::ps"))``) and in Jupyter.
Errors are ``pmdb.errors.PmdbError`` subclasses with one-line messages.
"""

from pmdb.api.objects import Object
from pmdb.api.program import Program, open
from pmdb.api.results import Address, Result, Row
from pmdb.api.stack import Stack, StackFrame

__all__ = ["Address", "Object", "Program", "Result", "Row", "Stack", "StackFrame", "open"]
