"""Daphne's HTTP requests without Twisted's form parsing.

Twisted's `Request` parses every POST body that has a Content-Type into `request.args`: it
builds an `email.message.EmailMessage` just to read the media type (`_parseContentType`), and a
`multipart/form-data` body (an attachment upload) is parsed whole by the email package, a
second copy of up to 10 MB in memory. Daphne never reads `request.args`: it hands the raw body
to the ASGI application, which parses it itself. Measured on the P9 benchmark (README, "P9"),
the media-type parse alone was ~10% of a daphne process's CPU per API create.

Twisted has the switch (`parsePOSTFormSubmission`, default True); daphne does not pass it, so
`apply()` makes daphne's request class pass False. Called from `config/asgi.py`, which daphne
imports before it serves; `tests/test_daphne_requests.py` checks a served request has it off.
"""

from __future__ import annotations

import functools
from typing import Any

from daphne.http_protocol import WebRequest


def apply() -> None:
    """Makes daphne's requests skip the form parsing (idempotent)."""
    original = WebRequest.__init__
    if getattr(original, "skips_form_parsing", False):
        return

    @functools.wraps(original)
    def __init__(self: WebRequest, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        original(self, *args, **kwargs)

    __init__.skips_form_parsing = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__  # type: ignore[method-assign]
