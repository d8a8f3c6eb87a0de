"""The durable record: seats, conversations and their messages, settings, audit, tokens.

Redis holds the live truth for admission (gate/admission.py); these rows are what an operator
reads afterwards and what `reconcile_sessions` compares Redis against. One module per concern;
everything is importable from `sessions_app.models`.
"""

from sessions_app.models.alerts import Alert, AlertSettings
from sessions_app.models.attachments import Attachment
from sessions_app.models.audit import AuditEvent
from sessions_app.models.conversations import Conversation
from sessions_app.models.messages import ChatMessage
from sessions_app.models.seats import ChatSession
from sessions_app.models.settings import GateSettings
from sessions_app.models.tokens import ApiToken, hash_token

__all__ = [
    "Alert",
    "AlertSettings",
    "ApiToken",
    "Attachment",
    "AuditEvent",
    "ChatMessage",
    "ChatSession",
    "Conversation",
    "GateSettings",
    "hash_token",
]
