"""Daphne's WebSocket frames without autobahn's log colouring.

autobahn's `sendData` (every frame daphne writes) calls `self.log.debug(..., func=hltype(...),
peer=hlval(...))`: the arguments are built before the logger decides to drop them, and with
`click` installed each `hl` colours its text through `click.style`. Daphne never starts
autobahn's (txaio's) log output, so the coloured text is built and thrown away: 5.3 µs per
frame measured here, 1.98 µs without the colour, about 8% of a big fan-out round's samples
under py-spy (issue 11, P3: 5,000 frames per process per round).

`apply()` turns the colouring off (autobahn's own switch for a machine without click), which
changes nothing but the colour of autobahn's own debug lines, were they ever printed. Called
from `config/asgi.py`; `tests/test_fanout_frames.py` checks it.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def apply() -> None:
    """Makes autobahn's `hl*` helpers return plain text (idempotent)."""
    try:
        import autobahn.util
    except ImportError:  # not under daphne: nothing to do
        return
    if not hasattr(autobahn.util, "_HAS_CLICK"):
        # A later autobahn renamed its switch: say so rather than silently pay again.
        logger.warning("autobahn.util._HAS_CLICK is gone; frames pay for log colouring")
        return
    autobahn.util._HAS_CLICK = False
