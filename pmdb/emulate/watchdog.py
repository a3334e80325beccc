"""A time limit for unicorn runs without unicorn's own ``timeout``.

unicorn implements ``emu_start(timeout=...)`` by creating a thread for every run
(~80 us, half the time of a short call); one long-lived daemon thread here
stops any armed run whose time is up instead. emu_start releases the GIL (ctypes),
so this thread gets to run while the emulation does.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any


class Watchdog:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._armed: dict[int, tuple[float, Any]] = {}
        self._fired: set[int] = set()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None

    def arm(self, uc: Any, seconds: float) -> int:
        """Call ``uc.emu_stop()`` after ``seconds`` unless disarmed first; returns a token."""
        token = next(self._ids)
        with self._cv:
            self._armed[token] = (time.monotonic() + seconds, uc)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="pmdb-emulate-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cv.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Forget a run; True when its time had run out (it was stopped)."""
        with self._cv:
            self._armed.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _loop(self) -> None:
        with self._cv:
            while True:
                if not self._armed:
                    self._cv.wait()
                    continue
                now = time.monotonic()
                token, (deadline, uc) = min(self._armed.items(), key=lambda kv: kv[1][0])
                if deadline > now:
                    self._cv.wait(deadline - now)
                    continue
                del self._armed[token]
                self._fired.add(token)
                uc.emu_stop()


WATCHDOG = Watchdog()
