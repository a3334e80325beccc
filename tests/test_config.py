"""pmdb.toml documents exactly the options of the table in pmdb/config.py, and values are checked."""

import tomllib

import pytest

from pmdb.config import OPTIONS, Config, ConfigError, flatten
from tests.conftest import ROOT


def test_pmdb_toml_lists_every_option_with_its_default():
    with open(ROOT / "pmdb.toml", "rb") as f:
        documented = flatten(tomllib.load(f))
    table = {o.name: o.default for o in OPTIONS}
    assert documented == table


@pytest.mark.parametrize("name,value,why", [
    ("shell.timeout", 0, "outside"),
    ("shell.timeout", "10", "integer"),
    ("repl.pager", 1, "true or false"),
    ("output.color", "blue", "not one of"),
    ("symbols.search_path", [1], "list of strings"),
    ("no.such", 1, "unknown option"),
])
def test_bad_values_are_refused_with_a_clear_message(name, value, why):
    with pytest.raises(ConfigError, match=why):
        Config({name: value})


def test_file_values_override_defaults(tmp_path):
    f = tmp_path / "pmdb.toml"
    f.write_text('[symbols]\nsearch_path = ["/opt/lib"]\n[unwind]\nmax_frames = 7\n')
    cfg = Config.from_file(str(f))
    assert cfg.get("symbols.search_path") == ["/opt/lib"]
    assert cfg.get("unwind.max_frames") == 7
    assert cfg.get("shell.timeout") == 60


def test_a_broken_file_is_one_error(tmp_path):
    f = tmp_path / "pmdb.toml"
    f.write_text("[symbols\n")
    with pytest.raises(ConfigError, match="pmdb.toml"):
        Config.from_file(str(f))
