"""WebSocket routes: the person's chat socket and the staff console's live feed."""

from django.urls import path, re_path

from sessions_app.console.live import ConsoleConsumer
from sessions_app.consumers.base import RefuseConsumer
from sessions_app.consumers.chat import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
    path("ws/console/", ConsoleConsumer.as_asgi()),
    # The earlier chat service's form: the socket opens that conversation (another person's
    # id is refused by the consumer with NOT_FOUND, 4404).
    re_path(r"^ws/chat/(?P<conversation_id>[^/]{1,64})/?$", ChatConsumer.as_asgi()),
    # Any other path is refused before accept (HTTP 403), not "No route found" (HTTP 500).
    re_path(r"", RefuseConsumer.as_asgi()),
]
