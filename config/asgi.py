"""ASGI entry point: HTTP through Django, WebSockets through Channels.

WebSockets pass the Origin check (against ALLOWED_HOSTS, read once at import) and the
session-cookie authentication before any consumer sees them, except a chat handshake that
carries an API token (sessions_app/consumers/token_auth.py).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

# Static files are small and few; daphne serves them itself unless a proxy in front does
# (SERVE_STATIC=0), so `make run` needs nothing else.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.SERVE_STATIC else django_asgi_app

from sessions_app.api.lean import LeanApiRouter  # noqa: E402

# A service token's v1 session calls skip the page middlewares (sessions_app/api/lean.py).
routed_http = LeanApiRouter(http_app)

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from sessions_app import daphne_frames, daphne_requests, eager_writes, gctune  # noqa: E402
from sessions_app.consumers.token_auth import TokenAuthMiddleware  # noqa: E402
from sessions_app.routing import websocket_urlpatterns  # noqa: E402

sockets = URLRouter(websocket_urlpatterns)
application = ProtocolTypeRouter(
    {
        "http": routed_http,
        # A chat handshake with an API token (programs) skips the Origin check and the cookie;
        # token_auth.py says why that is safe. Everything else: Origin check, then cookie.
        "websocket": TokenAuthMiddleware(
            token_app=sockets,
            cookie_app=AllowedHostsOriginValidator(AuthMiddlewareStack(sockets)),
        ),
    }
)

# Daphne passes raw bodies on; Twisted need not parse forms it never uses (the module says why).
daphne_requests.apply()
# autobahn builds coloured log text for every frame daphne writes, then drops it (module says).
daphne_frames.apply()
# A write to an idle connection is sent on the next loop pass without registering the socket
# with the loop and unregistering it again (the module says why and what is kept).
eager_writes.apply()
# Everything above lives as long as the process: no full collection need walk it again.
gctune.after_startup()
