"""Plugin discovery: built-ins, entry points, plugin paths; broken and duplicate plugins."""

import io
import sys
import textwrap

from pmdb.commands.registry import Registry
from pmdb.config import Config
from pmdb.session import Session

PLUGIN = textwrap.dedent('''
    from pmdb.commands import dcmd, walker

    @dcmd("{name}", addr="optional", synopsis="say hello", example="::{name}")
    def hello(ctx, who="world"):
        """Greets; with an address, says it."""
        ctx.out.line(f"hello {{who}}" + (f" at {{ctx.addr:x}}" if ctx.addr is not None else ""))

    @walker("{name}_count", synopsis="three numbers")
    def count(ctx, start):
        yield from (1, 2, 3)
''')


def _session(**config):
    out, err = io.StringIO(), io.StringIO()
    return Session(config=Config(config), stdout=out, stderr=err), out, err


def test_builtins_are_found_by_walking_the_packages():
    reg = Registry()
    reg.discover()
    assert reg.load_errors == []
    for name in ("dcmds", "walkers", "help", "walk", "grep", "head", "dump"):
        assert reg.has_dcmd(name), name


def test_plugin_path_adds_dcmds_and_walkers(tmp_path):
    (tmp_path / "greet.py").write_text(PLUGIN.format(name="greet"))
    s, out, err = _session(**{"plugins.paths": [str(tmp_path)]})
    assert s.run_line("::greet pmdb")
    assert s.run_line("1234::greet")
    assert s.run_line("::walk greet_count | ::greet")
    assert out.getvalue().splitlines() == ["hello pmdb", "hello world at 1234",
                                           "hello world at 1", "hello world at 2", "hello world at 3"]
    assert err.getvalue() == ""


def test_broken_plugin_is_reported_and_skipped(tmp_path):
    (tmp_path / "a_broken.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "b_good.py").write_text(PLUGIN.format(name="good"))
    s, out, err = _session(**{"plugins.paths": [str(tmp_path)]})
    assert "a_broken.py failed to load: RuntimeError: boom" in err.getvalue()
    assert s.run_line("::good")
    assert out.getvalue() == "hello world\n"


def test_duplicate_dcmd_name_is_an_error(tmp_path):
    (tmp_path / "dup.py").write_text(PLUGIN.format(name="help"))
    s, out, err = _session(**{"plugins.paths": [str(tmp_path)]})
    assert "duplicate dcmd name 'help'" in err.getvalue()
    assert s.run_line("::help help")
    assert "describe a dcmd or walker" in out.getvalue()


def test_entry_point_group_pmdb_plugins(tmp_path, monkeypatch):
    dist = tmp_path / "pmdbhello-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pmdbhello\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pmdb.plugins]\nhello = pmdbhello_mod\n")
    (tmp_path / "pmdbhello_mod.py").write_text(PLUGIN.format(name="epgreet"))
    monkeypatch.syspath_prepend(str(tmp_path))
    s, out, err = _session()
    assert s.run_line("::epgreet ep")
    assert out.getvalue() == "hello ep\n"
    sys.modules.pop("pmdbhello_mod", None)


def test_help_of_every_builtin_has_synopsis_and_example():
    s, out, err = _session()
    reg = s.registry
    for name, spec in reg.dcmds.items():
        assert spec.synopsis, name
        assert spec.example, name
        assert s.run_line(f"::help {name}" if not name.startswith("$") else f"::help {name}")
    for name, w in reg.walkers.items():
        assert w.synopsis, name


def test_unknown_dcmd_and_walker_are_one_line_each():
    s, out, err = _session()
    assert not s.run_line("::nosuch")
    assert not s.run_line("::walk nosuch")
    assert err.getvalue().splitlines() == ["pmdb: unknown dcmd 'nosuch' (::dcmds lists them)",
                                           "pmdb: unknown walker 'nosuch' (::walkers lists them)"]
