"""The fuzz targets in CI: a short smoke of each, the kept corpus replayed, and the mdb
language generated from its grammar (hypothesis).

A smoke runs a few hundred mutants per parser target and a few dozen per in-dump target
(each of those opens a damaged kernel model), from fixed seeds so a failure reproduces;
``python -m tests.fuzz TARGET --runs N`` runs the long campaigns (see README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import need_fixture
from tests.fuzz.harness import CORPUS, patches_from_json, run_lines
from tests.fuzz.runner import SLOW, run_random
from tests.fuzz.targets import all_targets

TARGETS = all_targets()
SMOKE_RUNS = {"language": 120, "zstd": 150}
IN_DUMP_RUNS = 25
SMOKE_SLOW = 2 * SLOW            # CI machines are shared: a smoke fails only past 2 s


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_smoke(name: str, tmp_path: Path) -> None:
    target = TARGETS[name]
    if target.fixture is not None:
        need_fixture(target.fixture)
    runs = IN_DUMP_RUNS if target.patches is not None else SMOKE_RUNS.get(name, 300)
    stats = run_random(target, runs, 0, seed=13, crashes=tmp_path, quiet=True)
    real = [f for f in stats.findings if not f.startswith("slow:") or float(f.split()[1]) > SMOKE_SLOW]
    assert not real, f"{name}: {real[:3]} (inputs kept in {tmp_path})"
    assert stats.runs >= runs


def _kept() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", _kept(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_kept_inputs_stay_fixed(path: Path) -> None:
    """Every input a campaign found (tests/data/fuzz/TARGET/): raw bytes for a parser, a
    patch description (symbol+offset or address, and bytes) applied to the fixture dump
    for an in-dump target."""
    target = TARGETS[path.parent.name]
    if target.fixture is not None:
        need_fixture(target.fixture)
    if path.suffix == ".json" and target.replay is not None and target.base is not None:
        record = json.loads(path.read_text())
        target.replay(patches_from_json(record["patches"], target.base()))
    else:
        target.run(path.read_bytes())


# -- the language from its grammar ------------------------------------------------------------

_numbers = st.one_of(st.integers(0, 2**64 - 1).map(lambda n: f"{n:x}"),
                     st.integers(0, 10**6).map(lambda n: f"0t{n}"),
                     st.integers(0, 255).map(lambda n: f"0i{n:b}"),
                     st.sampled_from(["0", "1", "ffffffff", "0i_", "0t", "0x", "-1"]))
_symbols = st.sampled_from(["init_task", "jiffies_64", "prb", "slab_caches", "nosuch", "."])
_atoms = st.one_of(_numbers, _symbols, st.sampled_from(["<rsp", "<t", "*init_task", "(1+2)"]))
_exprs = st.recursive(_atoms, lambda inner: st.tuples(inner, st.sampled_from(
    ["+", "-", "*", "%", "&", "|", "^", "<<", ">>", "==", "#"]), inner).map("".join), max_leaves=4)
_formats = st.lists(st.tuples(st.sampled_from(["", "0", "1", "4", "0t", "99999999999"]),
                              st.sampled_from(list("BxXJKbdDuUqQeEvVcCsSaprtnY+-^iI"))),
                    max_size=4).map(lambda items: "".join(c + f for c, f in items))
_dcmds = st.sampled_from(["::status", "::ps", "::walk task", "::print task_struct pid",
                          "::sizeof struct list_head", "::whatis", "::help ps", "::formats",
                          "::head -n 2", "::grep .==0", "::nm -n 3", "::dump", "::offsetof list_head next"])
_stages = st.one_of(
    st.tuples(_exprs, st.sampled_from(["", ","]), _exprs, st.sampled_from(["/", "=", "?"]), _formats)
    .map(lambda t: f"{t[0]}{t[1]}{t[2] if t[1] else ''}{t[3]}{t[4]}"),
    st.tuples(st.one_of(st.just(""), _exprs), _dcmds).map("".join),
    st.tuples(_exprs, st.sampled_from([">t", ""])).map("".join))
_lines = st.lists(_stages, min_size=1, max_size=3).map(" | ".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=_lines)
def test_language_grammar_on_a_kernel_dump(line: str) -> None:
    """Lines built from the mdb grammar: on the kernel dump (the evaluator, formats and dcmds
    with small limits) never an internal error."""
    from tests.fuzz.kernel import KASLR_DUMP, base

    need_fixture(KASLR_DUMP)
    run_lines(base(KASLR_DUMP), [line])


@settings(max_examples=300, deadline=None)
@given(line=st.one_of(_lines, st.text(max_size=60)))
def test_language_without_a_target(line: str) -> None:
    run_lines(None, [line])
