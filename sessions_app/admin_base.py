"""The two base classes every admin page of chatgate uses (sessions_app/admin.py and
sessions_app/chat/admin.py): a Korean-friendly list title, and read-only records."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.text import capfirst
from django.utils.translation import gettext_noop

# Django's admin filter heading, re-translated by our catalogue (the project's locale wins):
# Django's own Korean "%(filter_title)s (으)로" reads poorly; "상태별" is how Korean says "by
# state". Named here so that makemessages keeps the entry.
FILTER_HEADING = gettext_noop(" By %(filter_title)s ")


class TitledAdmin(admin.ModelAdmin):
    """The list page titled with the model's plural name ("세션"), not Django's generic
    "Select %s to change/view", which reads as "보기위한 세션 를(을) 선택" in Korean."""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        title = capfirst(str(self.model._meta.verbose_name_plural))
        return super().changelist_view(request, {"title": title, **(extra_context or {})})


class ReadOnlyAdmin(TitledAdmin):
    """A record to read: nobody adds, edits or deletes rows here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SingleRowSettingsAdmin(TitledAdmin):
    """Settings kept in one row (`Model.load()` creates it on first use): never added or
    deleted, changed only with `steer_gate`, and the list page goes straight to the row."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one row, created on first use

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and request.user.has_perm(
            "sessions_app.steer_gate"
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """One row: go straight to it."""
        row = self.model.load()  # type: ignore[attr-defined]
        opts = self.model._meta
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk])
        )
