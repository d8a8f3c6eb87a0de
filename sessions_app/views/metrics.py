"""`/metrics` in Prometheus text format, for a bearer token or an allow-listed address.

Access: `Authorization: Bearer <METRICS_TOKEN>` (when a token is configured), or a client
address inside `METRICS_ALLOWED_IPS` (addresses or networks such as `10.0.0.0/8`; loopback by
default). The address is the socket peer (`REMOTE_ADDR`): behind a reverse proxy, allow the
proxy's address or use the token. Refusals are JSON, like every other machine-facing endpoint.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from sessions_app import conf, metrics


def _address_allowed(remote: str, allowed: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def metrics_allowed(request: HttpRequest) -> bool:
    token = str(conf.get("METRICS_TOKEN") or "")
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").strip(), token)
    return _address_allowed(request.META.get("REMOTE_ADDR", ""), conf.get("METRICS_ALLOWED_IPS"))


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse(
            {
                "error": {
                    "code": "forbidden",
                    "message": "Send Authorization: Bearer <METRICS_TOKEN> or scrape from an "
                    "address in METRICS_ALLOWED_IPS.",
                }
            },
            status=403,
        )
    return HttpResponse(metrics.metrics_text(), content_type=CONTENT_TYPE_LATEST)
