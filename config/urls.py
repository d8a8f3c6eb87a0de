"""Top-level URLs: the admin, login pages, and everything of the gate itself."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("sessions_app.urls")),
]

# Requests Django cannot read (an oversized or broken body, refused inside the CSRF middleware)
# answer JSON on JSON endpoints (sessions_app/views/csrf.py).
handler400 = "sessions_app.views.csrf.bad_request"
