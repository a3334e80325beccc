"""The manifest of built-in dcmds and walkers (pmdb/commands/builtin_names.py): never stale,
and a registry that finds every command even when it is."""

import subprocess
import sys

import pytest

from pmdb.commands import builtin_names
from pmdb.commands.manifest import OUTPUT, render
from pmdb.commands.registry import Registry


def test_manifest_is_what_the_modules_define():
    # fails when a dcmd, alias, walker or module is added, renamed or moved without
    # `python -m pmdb.commands.manifest`
    assert OUTPUT.read_text() == render(), "stale: run python -m pmdb.commands.manifest"


def test_every_manifest_name_resolves_to_its_module():
    reg = Registry()
    reg.discover()
    for name, module in builtin_names.DCMDS.items():
        assert reg.dcmd(name).func.__module__ == module, name
    for alias, name in builtin_names.ALIASES.items():
        assert reg.dcmd(alias).name == name
    for name, module in builtin_names.WALKERS.items():
        assert reg.walker(name).func.__module__ == module, name
    assert reg.load_errors == []


def test_a_name_missing_from_the_manifest_is_still_found(monkeypatch):
    monkeypatch.setattr(builtin_names, "DCMDS", {k: v for k, v in builtin_names.DCMDS.items() if k != "msgbuf"})
    monkeypatch.setattr(builtin_names, "WALKERS", {k: v for k, v in builtin_names.WALKERS.items() if k != "task"})
    reg = Registry()
    reg.discover()
    assert not reg.has_dcmd("msgbuf")           # the manifest does not know it ...
    assert reg.dcmd("msgbuf").name == "msgbuf"   # ... but looking it up searches every module
    assert reg.walker("task").name == "task"
    with pytest.raises(Exception, match="unknown dcmd 'nosuch'"):
        reg.dcmd("nosuch")


def test_a_module_missing_from_the_manifest_is_imported_at_discovery(monkeypatch):
    gone = "pmdb.dcmds.linux_log"
    monkeypatch.setattr(builtin_names, "MODULES", tuple(m for m in builtin_names.MODULES if m != gone))
    monkeypatch.setattr(builtin_names, "DCMDS", {k: v for k, v in builtin_names.DCMDS.items() if v != gone})
    reg = Registry()
    reg.discover()
    assert reg.has_dcmd("msgbuf") and reg.has_dcmd("log")


def test_a_command_imports_only_its_own_modules():
    # what makes a fresh `pmdb -e` fast: no dcmd module, REPL or emulator imported for `1=D`
    code = ("import sys; from pmdb.cli import main; main(['-q', '-e', '1=D']); "
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].strip() == "1"
    loaded = set(lines[1].split())
    unwanted = {m for m in loaded if m.startswith(("pmdb.dcmds.", "pmdb.walkers.", "prompt_toolkit",
                                                   "pygments", "unicorn", "capstone", "rich",
                                                   "importlib.metadata", "elftools"))}
    assert unwanted == set()
