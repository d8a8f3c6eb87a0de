"""Admin page of attachments, read-only: staff see who attached what, where and how large (for
support and accounting), never the file itself through the admin. Imported from admin.py."""

from __future__ import annotations

from django.contrib import admin

from sessions_app.admin_base import ReadOnlyAdmin
from sessions_app.models import Attachment


@admin.register(Attachment)
class AttachmentAdmin(ReadOnlyAdmin):
    list_display = ("name", "owner", "conversation", "content_type", "size", "created_at")
    list_filter = ("content_type",)
    search_fields = ("name", "owner__username", "id")
    list_select_related = ("owner", "conversation")
    date_hierarchy = "created_at"
    exclude = ("extracted_text",)
