"""URLs of the gate, gathered from each surface's own module so each can change alone."""

from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from sessions_app.views import chat, health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico"), permanent=True)),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/v1/", include("sessions_app.api.urls")),
    path("api/chat/", include("sessions_app.api.chat_urls")),
    path("console/", include("sessions_app.console.urls")),
    path("", include(chat.urlpatterns)),
]
