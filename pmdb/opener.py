"""Opening a target: dump file -> address space -> objects -> symbols and types -> Target.

The one place that wires the layers together, so each layer gets only what it
needs. Problems that leave the core usable (a library not found, a build-id
mismatch) become ``target.warnings`` for the caller to print once.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pmdb.cache import Cache, default_directory
from pmdb.config import Config
from pmdb.dumps.base import Dump
from pmdb.dumps.detect import open_dump
from pmdb.dumps.elf import ElfCore
from pmdb.errors import FormatError, PmdbError
from pmdb.progress import Progress
from pmdb.target import Target
from pmdb.types.registry import TypeRegistry


def open_target(path: str, *, config: Config, symbol_files: Sequence[str] = (),
                sysroot: str | None = None, progress: Progress | None = None) -> Target:
    """The Target for a dump file; FormatError (one line) when the file cannot be read.

    ``progress`` shows long work at open (decompressing a ``.zst`` dump); none by default."""
    cache = cache_of(config)
    dump = open_dump(path, cache, progress)
    name = os.path.basename(path)
    build: Callable[[], Target]
    if dump.kind == "vmcore":
        build, problem = (lambda: _open_vmcore(dump, path, cache, config, symbol_files, progress)), \
            "cannot find the kernel in the dump"
    elif isinstance(dump, ElfCore):
        core = dump
        build, problem = (lambda: _open_user_core(core, config=config, symbol_files=symbol_files,
                                                  sysroot=sysroot)), "corrupt core"
    else:
        dump.close()
        raise FormatError(f"{name}: {dump.kind} dumps are not supported yet")
    try:
        return build()
    except FormatError as err:
        dump.close()
        if str(err).startswith(f"{name}: "):
            raise
        raise FormatError(f"{name}: {err}") from None     # every open error names the file
    except (PmdbError, struct.error, ValueError, OverflowError) as err:
        # a note or header field that decodes to nonsense: still one line about the file
        dump.close()
        raise FormatError(f"{name}: {problem} ({err})") from None


def cache_of(config: Config) -> Cache:
    """The cache directory and size limit pmdb.toml sets."""
    directory = config.get("cache.directory")
    return Cache(Path(os.path.expanduser(directory)) if directory else default_directory(),
                 config.get("cache.max_size_mb") << 20)


def _open_vmcore(dump: Dump, path: str, cache: Cache, config: Config | None = None,
                 files: Sequence[str] = (), progress: Progress | None = None) -> Target:
    """A Linux kernel dump: VMCOREINFO -> page tables -> kallsyms -> BTF (vmlinux, then
    modules), DWARF of a debug vmlinux when one matches -> module symbols -> the OS model."""
    from pmdb.os.linux.kernel import LinuxKernel
    from pmdb.os.linux.mm.kernel_memory import load_kernel_memory

    config = config or Config()
    warnings: list[str] = []
    found: list[Any] = []           # the debug vmlinux, when one matches, and its head start
    more = _vmlinux_symbols(config, files, warnings, found, cache)
    km = load_kernel_memory(dump.space(), getattr(dump, "vmcoreinfo", ""), dump.arch, more_symbols=more,
                            cache=cache)
    types = TypeRegistry(dump.arch.ptr_size)
    warnings[:0] = km.problems
    debug, head_start = found if found else (None, None)
    if debug is not None:
        km.vmlinux = debug.path
    _kernel_types(km, types, warnings, cache, debug=debug, btf=bool(config.get("debuginfo.kernel_btf")),
                  progress=progress, head_start=head_start)
    kernel = LinuxKernel(dump, km, types, path=path)
    target = Target(path=path, arch=dump.arch, memory=km.space, symbols=km.symbols, types=types,
                    os=kernel, kind="vmcore")
    try:
        # crash's default context: the panic task, from its task_struct alone (the task
        # list of a busy machine is read when a command needs it, not at open)
        panic = kernel.panic_thread()
        if panic is not None:
            target.choose_current(panic)
    except PmdbError as err:
        # a task list cut short by excluded pages (an old makedumpfile that does not know
        # the kernel's page flags drops slab pages) still leaves the rest of the dump usable
        warnings.append(f"the panic task is not in the task list that could be read ({err})")
    if files:                       # modules' debug files (.ko) named with the dump
        from pmdb.os.linux.debuginfo import debuginfo_for

        warnings += debuginfo_for(kernel, cache).load_named(files)
    target.warnings = _unique(warnings + kernel.problems)
    return target


def _vmlinux_symbols(config: Config, files: Sequence[str], warnings: list[str], found: list[Any],
                     cache: Cache) -> Any:
    """What load_kernel_memory calls once kallsyms is read: finds the dump's debug vmlinux
    when one is named or found and matches (appending to ``found`` the DebugFile and the
    head start on its BTF and DWARF, types.head_start, which runs while kallsyms decodes),
    and returns its data symbols when kallsyms has none (no CONFIG_KALLSYMS_ALL)."""
    from pmdb.errors import FaultError
    from pmdb.symbols.vmlinux import data_symbols, find_vmlinux

    def more(info: Any, space: Any, symbols: Any) -> list[Any]:
        def read(addr: int, n: int) -> bytes | None:
            try:
                return bytes(space.read(addr + info.kernel_offset, n))
            except FaultError:
                return None

        def lookup(name: str) -> int | None:
            sym = symbols.lookup(name)
            return sym.addr if sym is not None and sym.module is None else info.symbols.get(name)

        hit = find_vmlinux(release=info.osrelease, build_id=info.build_id, named=files,
                           directories=config.get("debuginfo.directories"), read_memory=read)
        warnings.extend(hit.warnings)
        if hit.debug is None:
            return []
        from pmdb.types.head_start import start_head_start  # with pyelftools: only for a vmlinux

        found[:] = [hit.debug, start_head_start(hit.debug, cache)]
        if lookup("init_task") is not None:
            return []
        try:
            return data_symbols(hit.debug, lookup)
        except PmdbError as err:
            warnings.append(f"{hit.debug.path}: symbols not usable ({err})")
            return []

    return more


def _kernel_types(km: Any, types: TypeRegistry, warnings: list[str], cache: Cache, *, debug: Any,
                  btf: bool, progress: Progress | None, head_start: Any = None) -> None:
    """vmlinux BTF (cached by its content), the debug vmlinux's DWARF after it, module BTF
    and module symbols; what fails becomes a warning, since symbols and memory still work
    without types."""
    from pmdb.symbols.kmodules import RegistryOffsets
    from pmdb.types.btf_kernel import module_btfs, vmlinux_btf

    def lookup(name: str) -> int | None:
        sym = km.symbols.lookup(name)
        return sym.addr if sym is not None else None

    kernel_btf = None
    if btf and km.problems:             # no kallsyms: nothing names the BTF section
        if debug is None:
            warnings.append("no kernel types: the BTF is found through kallsyms")
    elif btf:
        try:
            kernel_btf = vmlinux_btf(km.space, lookup, cache=cache, build_id=km.info.build_id,
                                     head_start=head_start)
            types.add_source(kernel_btf)
        except PmdbError as err:
            if debug is None:
                warnings.append(f"no kernel types: {err}")
    if debug is not None:
        from pmdb.types.dwarf_kernel import kernel_dwarf_types

        types.add_source(kernel_dwarf_types(debug, cache, progress, head_start)[0])
    if not types.sources:
        if not btf:
            warnings.append("no kernel types: debuginfo.kernel_btf is false and no debug vmlinux matches")
        return
    try:
        km.load_modules(RegistryOffsets(types))
    except PmdbError as err:
        warnings.append(f"module symbols unavailable: {err}")
    if kernel_btf is None:
        return
    try:
        for mod in module_btfs(km.space, kernel_btf, lookup):
            types.add_source(mod.types)
    except PmdbError as err:
        warnings.append(f"module types unavailable: {err}")
    from pmdb.os.linux.declarations import KernelDeclarations

    types.add_source(KernelDeclarations(types))      # asked last: the headers' globals


def _open_user_core(core: ElfCore, *, config: Config, symbol_files: Sequence[str],
                    sysroot: str | None) -> Target:
    # imported here: a kernel dump never needs the user-process model or DWARF (~40 ms)
    from pmdb.os.user.process import UserProcess
    from pmdb.symbols.memimage import image_object
    from pmdb.symbols.objfile import load_objects

    search_path = [os.path.expanduser(p) for p in config.get("symbols.search_path")]
    root = config.get("symbols.sysroot") if sysroot is None else sysroot
    check = bool(config.get("symbols.check_build_id"))
    core.locate = _locator(core, search_path=search_path, sysroot=root, check=check,
                           symbol_files=symbol_files)
    proc = UserProcess(core, max_frames=config.get("unwind.max_frames"))
    warnings: list[str] = []
    objects = load_objects(core.space(), proc.mappings(), core_path=core.path, arch=core.arch,
                           search_path=search_path, sysroot=root, extra_files=symbol_files,
                           check_build_id=check, main_at=proc.executable_address(),
                           debug_directories=config.get("debuginfo.directories"))
    vdso_at = proc.aux("AT_SYSINFO_EHDR")
    if vdso_at and objects.object_at(vdso_at) is None:
        vdso = image_object(core.space(), vdso_at)
        if vdso is not None:
            objects.add(vdso)
    proc.objects = objects
    symbols = objects.symbol_table()
    types = TypeRegistry(core.arch.ptr_size)
    for source in objects.type_sources():
        types.add_source(source)
    warnings.extend(objects.warnings)
    target = Target(path=core.path, arch=core.arch, memory=core.space(), symbols=symbols,
                    types=types, os=proc, kind="user-core")
    target.warnings = _unique(warnings)
    return target


def _locator(core: ElfCore, *, search_path: list[str], sysroot: str, check: bool,
             symbol_files: Sequence[str]) -> Any:
    """Where to read a mapped file the core left out: the same search (and build-id check)
    the symbol loader uses, then any -s FILE with the same name."""
    from pmdb.symbols.finder import build_id_in_memory, build_id_of_file, find_file

    core_dir = os.path.dirname(os.path.abspath(core.path))

    def locate(recorded: str) -> str | None:
        head = next((f.start for f in core.files if f.path == recorded and f.offset == 0), None)
        expected = build_id_in_memory(core.space(), head) if head is not None else None
        found = find_file(recorded, core_dir=core_dir, search_path=search_path, sysroot=sysroot,
                          expected_build_id=expected, check_build_id=check)
        if found:
            return found
        base = os.path.basename(recorded)
        for extra in symbol_files:
            if os.path.basename(extra) == base or (expected and build_id_of_file(extra) == expected):
                return extra
        return None

    return locate


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [i for i in items if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]
