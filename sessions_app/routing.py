"""WebSocket routes: the person's chat socket and the staff console's live feed."""

from django.urls import path

from sessions_app.console.live import ConsoleConsumer
from sessions_app.consumers.chat import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
    path("ws/console/", ConsoleConsumer.as_asgi()),
]
