"""Layers only point down, and packages import each other without cycles.

Every import in pmdb/, dcmds/ and walkers/ is read with ``ast`` (top-level, inside
functions, and under ``if TYPE_CHECKING:``) and checked against one table of layers,
lowest first; a module may import its own layer and the layers below it, never one
above. The order, and why each layer sits where it does:

 0. errors                    the exceptions every layer raises
 1. cache, progress, config,  leaf utilities and value types (Thread, Mapping) that
    threads, demo, forked     import nothing but errors (forked: work in a forked child)
 2. arch                      CPU descriptions (registers, NT_PRSTATUS layout): pure data
 3. memory                    address spaces and page-table translation
 4. dumps                     file formats implement memory's spaces, describe their CPU
                              by arch, and parse VMCOREINFO
 5. types                     the type model and its sources (BTF, DWARF)
 6. symbols                   symbol tables; kernel modules need types to lay out
 7. unwind                    the generic unwinders (CFI, frame pointer, user stacks)
 8. language                  lexer, parser, evaluator: never reads memory itself
 9. os                        the OS models; inside os/linux a second table orders the
                              subjects (see OS_LINUX)
10. target                    what every dcmd takes: arch + memory + symbols + types + os
11. opener, disasm            open a file into a Target; disassemble a Target's memory
12. emulate                   the emulator runs over a Target and becomes one
13. commands, output,         the command machinery: they refer to one another
    formats, session
14. repl, cli, triage, api    front ends (triage: many dumps, run on Dask; api: pmdb.open for scripts)
15. dcmds, walkers            the plugins, on top of everything

Separately, the package-level graph of runtime imports (TYPE_CHECKING imports left
out: they never run) must be acyclic. A node is a top-level pmdb package or module,
or one subject package of os/linux (its CPU packages count with arch/).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT

LAYERS: tuple[tuple[str, ...], ...] = (
    ("pmdb.errors", "pmdb.seal", "pmdb.cachedir"),
    ("pmdb.cache", "pmdb.codecache", "pmdb.progress", "pmdb.config", "pmdb.threads", "pmdb.demo",
     "pmdb.forked", "pmdb.lookup_memo"),
    ("pmdb.arch",),
    ("pmdb.memory",),
    ("pmdb.dumps",),
    ("pmdb.types",),
    ("pmdb.symbols",),
    ("pmdb.unwind",),
    ("pmdb.language",),
    ("pmdb.os",),
    ("pmdb.target",),
    ("pmdb.opener", "pmdb.disasm"),
    ("pmdb.emulate",),
    ("pmdb.commands", "pmdb.output", "pmdb.format_lines", "pmdb.formats", "pmdb.session"),
    ("pmdb.repl", "pmdb.cli", "pmdb.__main__", "pmdb.triage", "pmdb.api"),
    ("dcmds", "walkers"),
)

# inside os/linux, lowest first: the facade (kernel.py, sysinfo.py) is on top and no
# subject package imports it; os/user is a sibling that imports none of them
OS_LINUX: tuple[tuple[str, ...], ...] = (
    ("pmdb.os.linux.stacks",),
    ("pmdb.os.linux.arch",),
    ("pmdb.os.linux.fs",),            # VFS reads (d_path): mm names a VMA's file through it
    ("pmdb.os.linux.mm",),
    ("pmdb.os.linux.tasks", "pmdb.os.linux.printk"),
    ("pmdb.os.linux.slab",),
    ("pmdb.os.linux",),
)

Import = tuple[str, str, int, bool]        # importer, imported module, line, TYPE_CHECKING only


def _modules() -> Iterator[tuple[str, Path]]:
    for top in ("pmdb", "dcmds", "walkers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def _canonical(name: str) -> str:
    """pmdb.dcmds.x is dcmds.x (the plugins ship inside pmdb under that name)."""
    for plugins in ("dcmds", "walkers"):
        if name == f"pmdb.{plugins}" or name.startswith(f"pmdb.{plugins}."):
            return name[len("pmdb."):]
    return name


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports() -> Iterator[Import]:
    for name, path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        guarded = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [base]
            else:
                continue
            for target in targets:
                target = _canonical(target)
                if target.split(".")[0] in ("pmdb", "dcmds", "walkers"):
                    yield name, target, node.lineno, node.lineno in guarded


def _rank(table: tuple[tuple[str, ...], ...], module: str) -> int | None:
    """The layer of the longest prefix of module named in the table."""
    best: tuple[int, int] | None = None
    for rank, names in enumerate(table):
        for prefix in names:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    return best[0] if best is not None else None


def test_every_module_has_a_layer() -> None:
    missing = [name for name, _ in _modules() if name != "pmdb" and _rank(LAYERS, name) is None]
    assert not missing, f"modules in no layer (add them to LAYERS): {missing}"


def test_layers_only_point_down() -> None:
    upward = []
    for importer, imported, line, _ in _imports():
        for table in (LAYERS, OS_LINUX):
            low, high = _rank(table, importer), _rank(table, imported)
            if low is not None and high is not None and high > low:
                upward.append(f"{importer}:{line} imports {imported}")
                break
    assert not upward, "upward imports:\n" + "\n".join(upward)


def _node(module: str) -> str:
    """The package a module counts under in the package graph."""
    parts = module.split(".")
    if parts[:3] == ["pmdb", "os", "linux"] and len(parts) > 3:
        subject = ".".join(parts[:4])
        return subject if (ROOT / Path(*parts[:4])).is_dir() else "pmdb.os.linux"
    if parts[:2] == ["pmdb", "os"] and len(parts) > 2:
        return ".".join(parts[:3])
    return ".".join(parts[:2]) if parts[0] == "pmdb" else parts[0]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}         # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_packages_import_each_other_without_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for importer, imported, _, type_only in _imports():
        a, b = _node(importer), _node(imported)
        if a != b and not type_only:
            graph.setdefault(a, set()).add(b)
    cycle = _cycle(graph)
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or [])


def test_the_checker_sees_what_it_must() -> None:
    """The rules catch an upward import inside a function, and a cycle."""
    tree = ast.parse("def f():\n    from pmdb.os.linux.kernel import LinuxKernel\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    imported = node.module or ""
    low, high = _rank(LAYERS, "pmdb.symbols.kallsyms"), _rank(LAYERS, imported)
    assert low is not None and high is not None and high > low
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
    assert _node("pmdb.os.linux.arch.x86_64.unwind") == "pmdb.os.linux.arch"
    assert _node("pmdb.os.linux.kernel") == "pmdb.os.linux"
    assert _node("pmdb.dumps.elf") == "pmdb.dumps"
