"""Failures Django answers before any view runs, in JSON on JSON endpoints: a failed CSRF check
(CSRF_FAILURE_VIEW) and a request it cannot read (handler400: a body over
DATA_UPLOAD_MAX_MEMORY_SIZE, a broken multipart body, both raised inside the CSRF middleware).

The README promises JSON errors on `/api/` and on the chat page's JSON endpoints (`/chat/...`);
Django's own views answer HTML there, which a page's `fetch` cannot read. Pages keep Django's.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.csrf import csrf_failure as html_csrf_failure
from django.views.defaults import bad_request as html_bad_request

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


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not wants_json(request):
        return html_bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        code, message = "TOO_LARGE", _("The request body is too large.")
    else:
        code, message = "BAD_REQUEST", _("The request could not be read; send it as JSON.")
    response = JsonResponse({"error": {"code": code, "message": message}}, status=400)
    response["Cache-Control"] = "no-store"
    return response
