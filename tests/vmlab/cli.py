"""`python -m tests.vmlab`: make real kernel crash dumps on demand (see README.md here)."""

from __future__ import annotations

import argparse
import json
import sys

from tests.vmlab import dumps, kernels, scenarios
from tests.vmlab.arches import ARCHES
from tests.vmlab.chroot import build_module
from tests.vmlab.common import LabError, cache_root, say
from tests.vmlab.dbg import fetch_dbg, select_dbg
from tests.vmlab.debindex import load_index
from tests.vmlab.make import dump_dir, make


def cmd_list(args: argparse.Namespace) -> int:
    cache = cache_root()
    print("kernels (tests/vmlab/kernels.toml):")
    for k in kernels.load_kernels().values():
        print(f"  {k.name:10} {k.arch:6} {k.release:24} {k.version:22} {k.dist}")
    print("scenarios:")
    for s in scenarios.SCENARIOS.values():
        print(f"  {s.name:14} {s.why}")
    print(f"formats: {', '.join(dumps.FILES)} (aliases: {', '.join(dumps.ALIASES)})")
    print(f"made, in {cache / 'dumps'}:")
    for k in kernels.load_kernels().values():
        repeats = sorted(p.name for p in (cache / "dumps" / k.release).glob("*@*"))   # make --repeat
        for s in [*scenarios.SCENARIOS, *repeats]:
            meta = dump_dir(cache, k, s) / "meta.json"
            if meta.exists():
                m = json.loads(meta.read_text())
                print(f"  {k.name:10} {s:14} {m['seconds']['panic']:6.1f} s  {' '.join(m['formats'])}")
    return 0


def cmd_available(args: argparse.Namespace) -> int:
    """What the archive holds today for a kernel's dist: to update a pin that has gone."""
    cache = cache_root()
    for k in kernels.select(args.kernel):
        index = load_index(cache, k.archive, k.dist, refresh=True, arch=k.arch)
        found = sorted((p.name, p.version) for name, pkgs in index.items() for p in pkgs
                       if name.startswith("linux-image-") and name.endswith(k.flavour_suffix)
                       and "cloud" not in name and "-rt-" not in name and "dbg" not in name)
        print(f"{k.name} ({k.dist}), pinned {k.release} {k.version}:")
        for name, version in found:
            print(f"  {name.removeprefix('linux-image-'):28} {version}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Everything before a boot: packages, the suite chroot, the module."""
    cache = cache_root()
    for k in kernels.select(args.kernel):
        kernels.fetch_image(cache, k)
        print(build_module(cache, k))
    return 0


def cmd_dbg(args: argparse.Namespace) -> int:
    """The kernels' debug vmlinux (linux-image-RELEASE-dbg), for pmdb's DWARF types."""
    cache = cache_root()
    for k in select_dbg(args.kernel):
        print(fetch_dbg(cache, k))
    return 0


def cmd_make(args: argparse.Namespace) -> int:
    cache = cache_root()
    formats = dumps.parse_formats(args.formats)
    failed = 0
    for k in kernels.select(args.kernel):
        for s in scenarios.with_repeats(scenarios.select(args.scenario), args.repeat):
            why_not = scenarios.refusal(s, ARCHES[k.arch])
            if why_not and args.scenario == "all":  # named ones fail below, with this line
                say(f"skipped {k.name} {s.name}: {why_not}")
                continue
            for attempt in (1, 2):
                try:
                    print(make(cache, k, s, formats, force=args.force))
                    break
                except LabError as e:
                    # TCG now and then faults a guest while it boots (an int3 Oops in code the
                    # kernel is patching, before the init even runs): such a boot gets one more try
                    if attempt == 1 and "panicked before sending the truth" in str(e):
                        say(f"{k.name} {s.name}: the guest died before its truth ({e}); once more")
                        continue
                    say(f"FAILED {k.name} {s.name}: {e}")
                    failed += 1
    return 1 if failed else 0


def cmd_path(args: argparse.Namespace) -> int:
    """The cached path of a set, its truth, or one dump; exit 1 when it is not made."""
    cache = cache_root()
    (k,) = kernels.select(args.kernel)
    (s,) = scenarios.select(args.scenario)
    d = dump_dir(cache, k, s.name)
    if args.format is None:
        path = d
    elif args.format in ("truth", "console", "meta"):
        path = d / {"truth": "truth", "console": "console.log", "meta": "meta.json"}[args.format]
    elif args.format in dumps.FILES:
        path = d / dumps.FILES[args.format]
    else:
        raise LabError(f"unknown format {args.format!r}; known: {', '.join(dumps.FILES)}, truth, console, meta")
    if not (d / "meta.json").exists() or not path.exists():
        say(f"not made: {path} (run: python -m tests.vmlab make {k.name} {s.name})")
        return 1
    print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.vmlab",
                                description="Real Linux crash dumps of pinned Debian kernels, made under QEMU.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="pinned kernels, scenarios, formats and the sets made")
    a = sub.add_parser("available", help="the kernel versions the archive holds now")
    a.add_argument("kernel", help="kernel name(s), comma list, all (amd64) or all-ARCH")
    f = sub.add_parser("fetch", help="download a kernel and build the module for it")
    f.add_argument("kernel", help="kernel name(s), comma list, all (amd64) or all-ARCH")
    d = sub.add_parser("dbg", help="download a kernel's debug vmlinux (its -dbg package)")
    d.add_argument("kernel", help="kernel name(s) as for fetch, or a [dbg-only] one of kernels.toml")
    m = sub.add_parser("make", help="make dump sets (reuses finished ones)")
    m.add_argument("kernel", help="kernel name(s), comma list, all (amd64) or all-ARCH")
    m.add_argument("scenario", help="scenario name(s), comma list, or all")
    m.add_argument("--formats", default="all", help="comma list of formats/aliases (default all)")
    m.add_argument("--force", action="store_true", help="make the set again even if finished")
    m.add_argument("--repeat", type=int, default=1, metavar="K",
                   help="also make runs 2..K of each scenario, each a set of its own (null@2 ...)")
    q = sub.add_parser("path", help="print a made set's path (or one file's)")
    q.add_argument("kernel")
    q.add_argument("scenario")
    q.add_argument("format", nargs="?", help="a dump format, or truth, console, meta")
    return p


COMMANDS = {"list": cmd_list, "available": cmd_available, "fetch": cmd_fetch, "dbg": cmd_dbg, "make": cmd_make,
            "path": cmd_path}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LabError as e:
        print(f"vmlab: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vmlab: interrupted (unfinished sets are left as .tmp-* and redone next time)", file=sys.stderr)
        return 130
