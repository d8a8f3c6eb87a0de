"""Django admin registrations (issue 4 widens these with actions and links)."""

from django.contrib import admin

from sessions_app.models import ApiToken, AuditEvent, ChatMessage, ChatSession, GateSettings


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "state", "lane", "created_at", "activated_at", "close_reason")
    list_filter = ("state", "close_reason", "lane")
    search_fields = ("user__username", "id")


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin):
    list_display = ("session", "sequence", "role", "tokens", "latency_ms", "created_at")


@admin.register(GateSettings)
class GateSettingsAdmin(admin.ModelAdmin):
    list_display = ("max_active_sessions", "max_concurrent_queries", "admissions_paused")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor_label", "action", "target")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "prefix", "can_act_for_users", "created_at", "revoked_at")
