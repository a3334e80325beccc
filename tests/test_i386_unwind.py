"""The i386 frame-pointer unwinder on a stack built by hand: call frames, a pt_regs marked
by an encoded frame pointer (top bit cleared), the syscall's user pt_regs at the top of the
task stack (entry_SYSENTER_32 encodes no frame pointer), and a stack that goes wrong.
The lab's 686-pae dumps test it on real kernels (tests/test_i386_kernel.py)."""

from __future__ import annotations

import struct

from pmdb.memory.space import Segment, SegmentedSpace
from pmdb.os.linux.arch import KernelLayout
from pmdb.os.linux.arch.i386.unwind import PT_REGS, FramePointerUnwinder

STACK = 0xC1000000            # an 8K task stack, THREAD_SIZE-aligned
TEXT = 0xC7000000
A, B, C, D, E = (TEXT + 0x100 * i for i in range(1, 6))


class Bytes:
    def __init__(self, data: bytearray) -> None:
        self.data = data

    def read_at(self, offset: int, n: int) -> bytes:
        return bytes(self.data[offset:offset + n])


def _regs(**values: int) -> bytes:
    return struct.pack(f"<{len(PT_REGS)}I", *(values.get(name, 0) for name in PT_REGS))


def build() -> tuple[SegmentedSpace, dict[str, int]]:
    stack = bytearray(8192)

    def put(addr: int, data: bytes) -> None:
        stack[addr - STACK:addr - STACK + len(data)] = data

    put(0xC1001E10, struct.pack("<II", 0xC1001E40, B))
    put(0xC1001E40, struct.pack("<II", 0xC1001E80 & 0x7FFFFFFF, C))       # encoded: pt_regs
    put(0xC1001E80, _regs(eip=D, cs=0x60, esp=0xC1001F00, ebp=0xC1001F90))
    put(0xC1001F90, struct.pack("<II", 0xBF000000, E))                     # user's ebp
    put(STACK + 8192 - 4 * len(PT_REGS), _regs(eip=0x08048000, cs=0x73, ss=0x7B, esp=0xBF000100))
    mem = SegmentedSpace([Segment(STACK, 8192, Bytes(stack))], ptr_size=4)
    return mem, {"eip": A, "esp": 0xC1001E00, "ebp": 0xC1001E10, "cs": 0x60}


def unwinder(mem: SegmentedSpace) -> FramePointerUnwinder:
    symbols = {"_stext": TEXT, "_etext": TEXT + 0x100000}
    layout = KernelLayout(mem=mem, kernel_offset=0, phys_base=0, image_start=TEXT, page_offset_base=0xC0000000,
                          vmalloc_base=0xF8000000, vmemmap_base=0, modules_start=0xF8000000,
                          modules_end=0xFF800000)
    return FramePointerUnwinder.build(mem, symbols.get, layout, None, [])


def test_frames_through_an_exception_and_the_syscall_entry() -> None:
    mem, regs = build()
    frames = unwinder(mem).unwind_regs(regs)
    assert [f.pc for f in frames] == [A, B, C, D, E, 0x08048000]
    assert [f.method for f in frames] == ["regs", "fp", "fp", "exception", "fp", "exception"]
    assert frames[3].exception is not None and frames[3].sp == 0xC1001F00
    assert frames[-1].stack_name == "user" and not any(f.note for f in frames)


def test_a_return_address_outside_text_ends_the_walk_with_a_reason() -> None:
    mem, regs = build()
    seg = mem.segments[0].source
    assert isinstance(seg, Bytes)
    struct.pack_into("<I", seg.data, 0xC1001E44 - STACK, 0x1234)
    frames = unwinder(mem).unwind_regs(regs)
    assert [f.pc for f in frames] == [A, B]
    assert "0x1234" in frames[-1].note and "not kernel text" in frames[-1].note


def test_a_frame_pointer_going_down_the_stack_is_refused() -> None:
    mem, regs = build()
    seg = mem.segments[0].source
    assert isinstance(seg, Bytes)
    struct.pack_into("<I", seg.data, 0xC1001E10 - STACK, 0xC1001E00)
    frames = unwinder(mem).unwind_regs(regs)
    assert "wrong direction" in frames[-1].note


def test_a_frame_pointer_leaving_the_top_of_the_stack_ends_quietly() -> None:
    """The boot CPU's idle task: its first frame's saved ebp is no stack address."""
    stack = bytearray(8192)
    top_frame = STACK + 8192 - 0x50
    struct.pack_into("<II", stack, 0x1E10, top_frame, B)
    struct.pack_into("<II", stack, top_frame - STACK, 0x01000000, C)
    mem = SegmentedSpace([Segment(STACK, 8192, Bytes(stack))], ptr_size=4)
    frames = unwinder(mem).unwind_regs({"eip": A, "esp": 0xC1001E00, "ebp": 0xC1001E10, "cs": 0x60})
    assert [f.pc for f in frames] == [A, B, C] and not frames[-1].note


def test_from_an_irq_stack_to_the_task_stack_without_per_cpu_symbols() -> None:
    """The CPU was on an IRQ stack (another THREAD_SIZE block): the frame pointer chain
    crosses to the task stack, which ends in the syscall's user pt_regs."""
    mem, _ = build()
    task = mem.segments[0].source
    assert isinstance(task, Bytes)
    irq = bytearray(8192)
    irq_base = STACK + 0x10000
    struct.pack_into("<II", irq, 0x1F00, 0xC1001E10, A)                    # back to the task stack
    mem = SegmentedSpace([Segment(STACK, 8192, task), Segment(irq_base, 8192, Bytes(irq))], ptr_size=4)
    frames = unwinder(mem).unwind_regs({"eip": E, "esp": irq_base + 0x1EF0, "ebp": irq_base + 0x1F00,
                                        "cs": 0x60})
    assert [f.pc for f in frames] == [E, A, B, C, D, E, 0x08048000]
    assert frames[1].stack_name == "task" and frames[2].stack_name == "stack"
    assert frames[-1].stack_name == "user" and not any(f.note for f in frames)


def test_a_walk_never_returns_to_a_stack_it_left() -> None:
    mem, _ = build()
    task = mem.segments[0].source
    assert isinstance(task, Bytes)
    irq = bytearray(8192)
    irq_base = STACK + 0x10000
    struct.pack_into("<II", irq, 0x1F00, 0xC1001E10, A)
    struct.pack_into("<II", task.data, 0x1E10, irq_base + 0x1F80, B)       # and back again
    struct.pack_into("<II", irq, 0x1F80, 0, C)
    mem = SegmentedSpace([Segment(STACK, 8192, task), Segment(irq_base, 8192, Bytes(irq))], ptr_size=4)
    frames = unwinder(mem).unwind_regs({"eip": E, "esp": irq_base + 0x1EF0, "ebp": irq_base + 0x1F00,
                                        "cs": 0x60})
    assert "returns to" in frames[-1].note
