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


def kvm_usable() -> bool:
    """Whether /dev/kvm exists and this user can open it."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def choose(cache: Path, probe: Callable[[str], float]) -> str:
    """The accelerator to use; probe(accel) boots once and returns seconds to the init marker."""
    env = os.environ.get("PMDB_LAB_ACCEL")
    if env:
        if env not in CHOICES:
            raise LabError(f"PMDB_LAB_ACCEL={env}: use kvm or tcg")
        return env
    record = cache / "accel.json"
    if record.exists():
        return str(json.loads(record.read_text())["accel"])
    if not kvm_usable():
        result = {"accel": "tcg", "why": "/dev/kvm cannot be opened"}
    else:
        times = {}
        for accel in CHOICES:
            say(f"timing a boot under {accel} (once, to choose the accelerator)")
            try:
                times[accel] = round(probe(accel), 1)
            except LabError as e:
                say(f"{accel} boot failed: {e}")
        if not times:
            raise LabError("the guest boots neither under KVM nor under TCG")
        best = min(times, key=lambda a: times[a])
        result = {"accel": best, "seconds_to_init": times, "why": "faster boot to init"}
    result["measured"] = time.strftime("%Y-%m-%d %H:%M:%S")
    record.write_text(json.dumps(result, indent=1) + "\n")
    say(f"accelerator: {result['accel']} ({result.get('seconds_to_init', result['why'])})")
    return str(result["accel"])
