"""`/healthz`: 200 when Redis and the database answer, 503 otherwise.

Anonymous callers learn only which part is unavailable: the reason (an error text that names
the Redis address, the database host) goes to the log and to staff, never to strangers.
"""

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sessions_app.gate.admission import GateUnavailable, get_manager

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    problems: dict[str, str] = {}
    try:
        get_manager().ping()
    except GateUnavailable as exc:
        problems["redis"] = str(exc)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database error means "not healthy", with its text
        problems["database"] = f"{type(exc).__name__}: {exc}"
    if problems:
        logger.warning("healthz: unavailable: %s", problems)
        user = getattr(request, "user", None)
        if not (user is not None and user.is_authenticated and user.is_staff):
            problems = dict.fromkeys(problems, "unavailable")
        response = JsonResponse({"status": "unavailable", "problems": problems}, status=503)
        response["Retry-After"] = "5"
        return response
    return JsonResponse({"status": "ok", "redis": "ok", "database": "ok"})
