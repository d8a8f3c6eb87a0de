"""Chat backends: who answers a message. `get_backend()` builds the configured one."""

from __future__ import annotations

from sessions_app import conf
from sessions_app.chat.backends.base import BackendError, ChatBackend, ChatTurn, StreamEnd

__all__ = ["BackendError", "ChatBackend", "ChatTurn", "StreamEnd", "get_backend"]


def get_backend(name: str | None = None) -> ChatBackend:
    """The backend named by CHAT_BACKEND ("echo" or "openai"), with its settings."""
    name = name or str(conf.get("CHAT_BACKEND"))
    if name == "echo":
        from sessions_app.chat.backends.echo import EchoBackend

        return EchoBackend(token_delay=float(conf.get("ECHO_TOKEN_DELAY_SECONDS")))
    if name == "openai":
        from sessions_app.chat.backends.openai import OpenAIBackend

        return OpenAIBackend(
            base_url=str(conf.get("OPENAI_BASE_URL")),
            model=str(conf.get("OPENAI_MODEL")),
            api_key=str(conf.get("OPENAI_API_KEY")),
        )
    raise ValueError(f"Unknown CHAT_BACKEND {name!r}: use 'echo' or 'openai'.")
