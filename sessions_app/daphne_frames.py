"""Daphne's WebSocket frames without autobahn's log decoration.

autobahn's `sendData` (every frame daphne writes) calls `self.log.debug(..., func=hltype(...),
peer=hlval(...), data_len=hlval(...))`: the arguments are built before the logger decides to
drop them. `hltype` inspects the method and builds its qualified name, and with `click`
installed every `hl*` colours its text through `click.style`. Daphne never starts autobahn's
(txaio's) log output, so the text is built and thrown away: 5.3 µs per frame measured here,
and still ~8% of a 5,000-frame round's py-spy samples after the colour alone was turned off
(issue 11, P3).

`apply()` turns the colouring off (autobahn's own switch for a machine without click) and gives
autobahn's WebSocket module plain, cheap `hltype`/`hlval` (a qualified name and `str`): the same
words in autobahn's debug lines, were they ever printed, without the colour. Called from
`config/asgi.py`; `tests/test_fanout_frames.py` checks it.
"""

from __future__ import annotations

import logging
from typing import Any

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
    try:
        import autobahn.websocket.protocol as ws_protocol
    except ImportError:
        return
    if hasattr(ws_protocol, "hltype") and hasattr(ws_protocol, "hlval"):
        ws_protocol.hltype = _plain_type  # type: ignore[assignment]
        ws_protocol.hlval = _plain_value  # type: ignore[assignment]


def _plain_type(obj: Any) -> str:
    return f"<{getattr(obj, '__qualname__', type(obj).__qualname__)}>"


def _plain_value(value: Any, color: str = "white", bold: bool = True) -> str:
    return f"{value}"
