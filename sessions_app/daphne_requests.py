"""Daphne's HTTP requests without Twisted's form parsing or Twisted's own access log.

Twisted's `Request` parses every POST body that has a Content-Type into `request.args`: it
builds an `email.message.EmailMessage` just to read the media type (`_parseContentType`), and a
`multipart/form-data` body (an attachment upload) is parsed whole by the email package, a
second copy of up to 10 MB in memory. Daphne never reads `request.args`: it hands the raw body
to the ASGI application, which parses it itself. Measured on the P9 benchmark (README, "P9"),
the media-type parse alone was ~10% of a daphne process's CPU per API create.

Twisted has the switch (`parsePOSTFormSubmission`, default True); daphne does not pass it, so
`apply()` makes daphne's request class pass False. Called from `config/asgi.py`, which daphne
imports before it serves; `tests/test_daphne_requests.py` checks a served request has it off.

Twisted's `HTTPFactory.log` also formats a combined-log line for every finished request and
writes it to Twisted's global log, which daphne points at a function that drops it (unless run
with `-v 2`, where it repeats daphne's own line). Daphne writes its own access log
(`AccessLogGenerator`, kept); the dropped line was 2.6% of a daphne's CPU on the P9 benchmark,
so `apply()` makes daphne's factory skip it.
"""

from __future__ import annotations

import functools
from typing import Any

from daphne.http_protocol import HTTPFactory, WebRequest


def apply() -> None:
    """Makes daphne's requests skip the form parsing and Twisted's log line (idempotent)."""
    HTTPFactory.log = _no_twisted_log_line  # type: ignore[method-assign]
    original = WebRequest.__init__
    if getattr(original, "skips_form_parsing", False):
        return

    @functools.wraps(original)
    def __init__(self: WebRequest, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        original(self, *args, **kwargs)

    __init__.skips_form_parsing = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__  # type: ignore[method-assign]


def _no_twisted_log_line(self: HTTPFactory, request: Any) -> None:
    """Twisted's per-request log line, not written (daphne's access log has it)."""
