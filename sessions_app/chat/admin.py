"""Admin pages of the chat record: conversations and their messages, read-only.

A conversation is the person's; staff read it (support, accounting) but never rewrite what was
said. Imported once from sessions_app/admin.py so that registration happens with the rest.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from sessions_app.admin_base import ReadOnlyAdmin
from sessions_app.models import ChatMessage, Conversation


class MessageInline(admin.TabularInline):
    model = ChatMessage
    fields = ("id", "parent", "sender_type", "status", "content", "tokens_used", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = _("messages (send order)")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "owner", "status", "last_message_at", "created_at")
    list_filter = ("status",)
    search_fields = ("title", "owner__username", "id")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    inlines = [MessageInline]


@admin.register(ChatMessage)
class ChatMessageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "conversation",
        "seat",
        "sender_type",
        "status",
        "tokens_used",
        "latency_ms",
        "created_at",
    )
    list_filter = ("sender_type", "status", "message_type")
    search_fields = ("conversation__owner__username", "content")
    list_select_related = ("conversation", "seat__user")
    date_hierarchy = "created_at"
