"""The API's one error shape, `{"error": {"code", "message"}}`, and the statuses it uses.

Views raise `ApiError`; `json_view` turns it (and every unexpected failure) into JSON, so the
API never answers with an HTML page or a redirect, whatever goes wrong.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse

from sessions_app.gate.admission import GateUnavailable

logger = logging.getLogger(__name__)

# How long a client should wait before retrying while Redis or the database is unreachable.
UNAVAILABLE_RETRY_AFTER = 5


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> JsonResponse:
        body: dict[str, Any] = {"code": self.code, "message": self.message, **self.extra}
        response = JsonResponse({"error": body}, status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(int(self.retry_after))
        for name, value in self.headers.items():
            response[name] = value
        return response


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "FORBIDDEN", message)


def unavailable(message: str) -> ApiError:
    return ApiError(503, "UNAVAILABLE", message, retry_after=UNAVAILABLE_RETRY_AFTER)


def json_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wraps a view so that every failure becomes a JSON error with the right status."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
        except ApiError as exc:
            response = exc.response()
        except GateUnavailable as exc:
            # The detail (which redis-py error) tells an operator "down" from "too busy".
            logger.warning("admission store unavailable in %s: %s", request.path, exc.detail)
            response = unavailable(
                "The admission store is unreachable; nobody is admitted until it returns. "
                "Try again shortly."
            ).response()
        except DatabaseError:
            logger.exception("database error in %s", request.path)
            response = unavailable("The database did not answer; try again shortly.").response()
        except Exception:
            logger.exception("unexpected error in %s", request.path)
            response = ApiError(500, "INTERNAL", "Something went wrong on our side.").response()
        # API answers are about live state: never cached by a browser or a proxy.
        response["Cache-Control"] = "no-store"
        return response

    return wrapper
