from typing import Any

from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = _("Chat gate")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sessions_app.gate import admission, services
        from sessions_app.models import GateSettings

        # After Redis loses its data, scripts refuse until the recorded limits are back.
        admission.config_loader = services.limits_recorded

        # Saved limits (admin, console, command) reach Redis once the row is committed. Wired
        # here so that the model never imports a use-case.
        def push_saved_limits(sender: Any, instance: GateSettings, **kwargs: Any) -> None:
            transaction.on_commit(lambda: services.limits_push(instance))

        post_save.connect(
            push_saved_limits, sender=GateSettings, weak=False, dispatch_uid="limits_push"
        )

        self._wire_history_cache()

    def _wire_history_cache(self) -> None:
        from sessions_app.chat import history_cache
        from sessions_app.models import Attachment, ChatMessage
        from sessions_app.models.messages import messages_updated

        # Every write to a message makes its conversation's cached pages unreadable
        # (chat/history_cache.py): saves, deletes, and queryset updates. A page also lists the
        # files of its messages, so a file saved or deleted is a write to its conversation.
        def one_changed(sender: Any, instance: ChatMessage | Attachment, **kwargs: Any) -> None:
            history_cache.invalidate([instance.conversation_id])

        def many_changed(sender: Any, conversation_ids: set[Any], **kwargs: Any) -> None:
            history_cache.invalidate(conversation_ids)

        for signal in (post_save, post_delete):
            for model in (ChatMessage, Attachment):
                signal.connect(
                    one_changed,
                    sender=model,
                    weak=False,
                    dispatch_uid=f"history_{signal}_{model.__name__}",
                )
        messages_updated.connect(many_changed, weak=False, dispatch_uid="history_updates")
