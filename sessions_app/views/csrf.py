"""CSRF_FAILURE_VIEW: JSON endpoints answer a failed CSRF check in JSON, pages keep Django's page.

The README promises JSON errors on `/api/` and on the chat page's JSON endpoints (`/chat/...`);
Django's own failure view answers HTML there, which a page's `fetch` cannot read.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.csrf import csrf_failure as html_csrf_failure

JSON_PREFIXES = ("/api/", "/chat/")


def wants_json(request: HttpRequest) -> bool:
    return request.path_info.startswith(JSON_PREFIXES)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if not wants_json(request):
        return html_csrf_failure(request, reason=reason)
    message = _(
        "The security check failed (%(reason)s). Reload the page and try again; a service "
        "should send a bearer token instead."
    ) % {"reason": reason or "CSRF"}
    response = JsonResponse({"error": {"code": "CSRF_FAILED", "message": message}}, status=403)
    response["Cache-Control"] = "no-store"
    return response
