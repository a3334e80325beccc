"""KVM or TCG: measured once, remembered in the cache, overridable with PMDB_LAB_ACCEL.

A /dev/kvm that opens may be nested KVM, which can be slower than plain TCG (a machine here
once sat >90 s in the kernel decompressor under it), so the lab times a boot to the init's
first marker with each and keeps the faster.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from tests.vmlab.common import LabError, say

CHOICES = ("kvm", "tcg")
PROBE_TIMEOUT = 150.0


def kvm_usable() -> bool:
    """Whether /dev/kvm exists and this user can open it."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def choose(cache: Path, probe: Callable[[str, float], float]) -> str:
    """The accelerator to use; probe(accel, timeout) boots once, returns seconds to init."""
    env = os.environ.get("PMDB_LAB_ACCEL")
    if env:
        if env not in CHOICES:
            raise LabError(f"PMDB_LAB_ACCEL={env}: use kvm or tcg")
        return env
    record = cache / "accel.json"
    if record.exists():
        return str(json.loads(record.read_text())["accel"])
    if not kvm_usable():
        result: dict[str, object] = {"accel": "tcg", "why": "/dev/kvm cannot be opened"}
    else:
        # TCG first: KVM gets 3x TCG's time, so a crawling nested KVM costs little to rule out
        say("timing a boot under tcg and kvm (once, to choose the accelerator)")
        tcg = probe("tcg", PROBE_TIMEOUT)
        try:
            kvm: float | None = probe("kvm", max(20.0, 3 * tcg))
        except LabError as e:
            say(f"kvm: {e}")
            kvm = None
        best = "kvm" if kvm is not None and kvm < tcg else "tcg"
        result = {"accel": best, "seconds_to_init": {"tcg": round(tcg, 1),
                                                     "kvm": None if kvm is None else round(kvm, 1)},
                  "why": "the faster boot to the init's first marker"}
    result["measured"] = time.strftime("%Y-%m-%d %H:%M:%S")
    record.write_text(json.dumps(result, indent=1) + "\n")
    say(f"accelerator: {result['accel']} ({result.get('seconds_to_init', result['why'])})")
    return str(result["accel"])
