"""Running a target over many inputs: a seeded random mutator (always available), or
atheris's coverage-guided libFuzzer when installed; either way, per-input time and the
process's peak memory are measured, and every finding is saved to replay."""

from __future__ import annotations

import json
import random
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz.harness import INTERESTING, FuzzTarget, patches_to_json

MAX_LEN = 256 << 10
SLOW = 1.0                          # seconds: an input slower than this is a finding
HANG = 30                           # seconds: atheris stops the campaign at an input this slow


@dataclass
class Stats:
    runs: int = 0
    started: float = field(default_factory=time.monotonic)
    slowest: float = 0.0
    findings: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        took = time.monotonic() - self.started
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return (f"{name}: {self.runs} inputs in {took:.1f} s ({self.runs / max(took, 1e-9):.0f}/s), "
                f"slowest {self.slowest * 1000:.0f} ms, max RSS {rss:.0f} MB, "
                f"{len(self.findings)} findings")


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to four byte-level edits: the usual flips, interesting words, splices and cuts."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(at, len(buf) - 1)] = rng.randrange(256)
        elif op == 2:
            size = rng.choice((1, 2, 4, 8))
            value = rng.choice(INTERESTING) & ((1 << 8 * size) - 1)
            buf[at:at + size] = value.to_bytes(size, "little")
        elif op == 3:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4 and buf:
            del buf[at:at + rng.randint(1, 64)]
        elif op == 5 and pool:
            other = rng.choice(pool)
            j = rng.randrange(len(other) + 1)
            buf[at:] = other[j:j + rng.randint(0, 4096)]
        elif op == 6:
            del buf[at:]
        elif op == 7 and buf:
            j = rng.randrange(len(buf))
            buf[at:at] = buf[j:j + rng.randint(1, 32)]
    return bytes(buf[:MAX_LEN])


def one(target: FuzzTarget, data: bytes, stats: Stats, crashes: Path) -> None:
    """Run one input, timing it; save it (and its patches) when it is a finding."""
    start = time.monotonic()
    problem = None
    try:
        target.run(data)
    except Exception as err:        # noqa: BLE001 - every escape is the finding we look for
        problem = f"{type(err).__name__}: {str(err)[:300]}"
        if "--traceback" in sys.argv:
            traceback.print_exc()
    took = time.monotonic() - start
    stats.runs += 1
    stats.slowest = max(stats.slowest, took)
    if problem is None and took > SLOW:
        problem = f"slow: {took:.2f} s"
    if problem is not None:
        stats.findings.append(problem)
        save(target, data, crashes, problem)


def save(target: FuzzTarget, data: bytes, crashes: Path, problem: str) -> Path:
    crashes.mkdir(parents=True, exist_ok=True)
    import hashlib

    stem = crashes / f"{target.name}-{hashlib.sha1(data).hexdigest()[:12]}"
    stem.with_suffix(".bin").write_bytes(data)
    record: dict[str, object] = {"target": target.name, "problem": problem}
    if target.patches is not None:
        record["patches"] = patches_to_json(target.patches(data))
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"finding: {problem} -> {stem}.json", file=sys.stderr)
    return stem


def run_random(target: FuzzTarget, runs: int, seconds: float, seed: int, crashes: Path,
               quiet: bool = False) -> Stats:
    """Seeds first, then mutants of seeds and of recent inputs, until runs or seconds are used."""
    rng = random.Random(seed)
    pool = [s[:MAX_LEN] for s in target.seeds()] or [b""]
    try:
        target.run(pool[0])        # warm up: the base dump opens outside the time per input
    except Exception:              # noqa: BLE001 - counted again below
        pass
    stats = Stats()
    deadline = time.monotonic() + seconds if seconds else None
    for s in pool:
        one(target, s, stats, crashes)
    recent: list[bytes] = []
    while stats.runs < runs and (deadline is None or time.monotonic() < deadline):
        parent = rng.choice(recent) if recent and rng.random() < 0.3 else rng.choice(pool)
        data = mutate(rng, parent, pool)
        one(target, data, stats, crashes)
        recent = (recent + [data])[-64:]
        if not quiet and stats.runs % 5000 == 0:
            print(stats.line(target.name), file=sys.stderr, flush=True)
    return stats


def run_atheris(target_name: str, runs: int, seconds: float, crashes: Path, corpus: Path) -> None:
    """libFuzzer through atheris, pmdb instrumented for coverage; never returns."""
    import atheris

    with atheris.instrument_imports(include=["pmdb"]):
        from tests.fuzz.targets import all_targets

        target = all_targets()[target_name]
    corpus.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(target.seeds()):
        (corpus / f"seed-{i}").write_bytes(s[:MAX_LEN])
        target.run(s)              # warm up: the base dump opens outside the time limit
    stats = Stats()

    def entry(data: bytes) -> None:
        start = time.monotonic()
        try:
            target.run(data)
        except Exception as err:
            save(target, data, crashes, f"{type(err).__name__}: {str(err)[:300]}")
            raise
        took = time.monotonic() - start
        stats.slowest = max(stats.slowest, took)
        stats.runs += 1
        if took > SLOW:             # kept and counted as the random engine does; the campaign goes on
            stats.findings.append(f"slow: {took:.2f} s")
            save(target, data, crashes, f"slow: {took:.2f} s")
        if stats.runs % 5000 == 0 or stats.runs == runs:
            print(stats.line(target.name), file=sys.stderr, flush=True)

    # libFuzzer's timeout ends the campaign: it is a hang detector here (a load spike on a
    # shared machine must not end it); an input over SLOW is a finding kept by entry()
    args = [sys.argv[0], str(corpus), f"-runs={runs}", f"-timeout={HANG}", "-rss_limit_mb=2048",
            f"-max_len={MAX_LEN}", f"-artifact_prefix={crashes}/{target_name}-"]
    if seconds:
        args.append(f"-max_total_time={int(seconds)}")
    crashes.mkdir(parents=True, exist_ok=True)
    atheris.Setup(args, entry)
    atheris.Fuzz()
