"""Keeps the garbage collector's full collections out of the position fan-out.

Measured (issue 11): at 1,000 waiting pages the slow fan-out rounds were the ones that overlapped
a full collection (96-269 ms; 1.17 s at 5,000), because a full collection walks every object of
every open socket. Three habits, all process-wide and reversible:

* after start-up, everything built so far (Django, the URLconf, templates) is frozen: moved to
  the permanent generation, which no collection walks again;
* after a burst of connections (the registry's ticker, off the fan-out), the new sockets'
  objects are frozen too, once; when many of those sockets have gone, the frozen set is thawed
  and collected once, at that quiet moment, so cyclic garbage of closed sockets is not kept
  forever;
* while a fan-out round runs, the collector is paused (a counter: several loops may flush at
  once) and resumes as soon as the round ends.

CHATGATE_GC_TUNE=0 turns all of it off (the benchmark's same-run baseline).
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterator

# A burst: this many more sockets than at the last freeze. Thaw once this share of the sockets
# frozen with the last freeze has gone.
BURST_SOCKETS = 100
THAW_SHARE = 0.5

_lock = threading.Lock()
_paused = 0
_frozen_sockets = 0


def enabled() -> bool:
    return os.environ.get("CHATGATE_GC_TUNE", "1") != "0"


def after_startup() -> None:
    """Freeze what start-up built: it lives as long as the process."""
    if enabled():
        gc.collect()
        gc.freeze()


def settle(sockets: int) -> None:
    """Called from the registry's ticker (between fan-out rounds) with the live socket count."""
    global _frozen_sockets
    if not enabled():
        return
    with _lock:
        if _paused:
            return  # a round is in flight on some loop: try again on the next tick
        if sockets >= _frozen_sockets + BURST_SOCKETS:
            gc.collect(0)  # the burst's short-lived garbage is not worth freezing
            gc.freeze()
            _frozen_sockets = sockets
        elif _frozen_sockets and sockets <= _frozen_sockets * (1 - THAW_SHARE):
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            _frozen_sockets = sockets


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No collection while the body runs (a fan-out round); collection resumes after it."""
    global _paused
    if not enabled():
        yield
        return
    with _lock:
        _paused += 1
        if _paused == 1:
            gc.disable()
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0:
                gc.enable()
