"""Routes of the conversations API, mounted at /api/chat/. A trailing slash is optional (the
earlier service had none; pages often add one). Anything else under it is a JSON 404."""

from django.urls import re_path

from sessions_app.api import chat_files, chat_send, chat_views

app_name = "chat-api"

# Any text: a malformed id is "no such conversation" (404), decided by the view, not a 500.
ID = r"(?P<session_id>[^/]+)"

urlpatterns = [
    re_path(r"^sessions/?$", chat_views.sessions_view, name="sessions"),
    re_path(rf"^sessions/{ID}/?$", chat_views.session_view, name="session"),
    re_path(rf"^sessions/{ID}/messages/?$", chat_send.messages_view, name="messages"),
    re_path(rf"^sessions/{ID}/messages/stream/?$", chat_send.stream_view, name="stream"),
    re_path(rf"^sessions/{ID}/files/?$", chat_files.files_view, name="files"),
    re_path(r"^files/(?P<file_id>[^/]+)/?$", chat_files.file_view, name="file"),
    re_path(r"^files/(?P<file_id>[^/]+)/thumbnail/?$", chat_files.thumbnail_view, name="thumb"),
    re_path(r"^openapi\.json$", chat_views.openapi_view, name="openapi"),
    re_path(r"^(?P<rest>.*)$", chat_views.unknown_view),
]
