"""The gate's knobs, read from settings.CHATGATE with defaults.

The live limits (max active, max generating, timeouts, paused) are edited at run time through
GateSettings; the values here are only their first defaults and the process-level knobs.
"""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "MAX_ACTIVE_SESSIONS": 20,
    "MAX_CONCURRENT_QUERIES": 10,
    "IDLE_TIMEOUT_SECONDS": 30 * 60,
    "DISCONNECT_GRACE_SECONDS": 120,
    "QUERY_WAIT_TIMEOUT_SECONDS": 60,
    "LEASE_TTL_SECONDS": 30,
    # The longest one generation may run (issue 8, item 9): its holder cuts it there, and its
    # slot is not granted again before then even if the holder stops renewing (frozen), since
    # the model server may still be generating for it. 0 turns the cap off.
    "GENERATION_MAX_SECONDS": 120,
    "PRIORITY_LEAD": 20,
    "SWEEP_INTERVAL_SECONDS": 1.0,
    "CHAT_BACKEND": "echo",
    "ECHO_TOKEN_DELAY_SECONDS": 0.05,
    "OPENAI_BASE_URL": "http://127.0.0.1:8001/v1",
    "OPENAI_MODEL": "default",
    "OPENAI_API_KEY": "",
    "OPENAI_HISTORY_MESSAGES": 12,
    "CHAT_RATE_PER_MINUTE": 30,
    "API_CREATE_RATE_PER_MINUTE": 30,
    "API_TOKEN_CREATE_RATE_PER_MINUTE": 600,
    "MAX_MESSAGE_BYTES": 64 * 1024,
    # The most characters one chat message may hold. Sized from what the server can send back:
    # 8,000 Hangul are 24 KB as UTF-8, so the echo of a full message (JSON written with
    # ensure_ascii=False) stays well under daphne's 64 KiB frame cap, which limits sends too.
    "MAX_MESSAGE_CHARS": 8000,
    # The largest frame the server sends: under daphne's --websocket-max-message-size (64 KiB),
    # which caps sends too; a bigger frame is refused with a logged error (consumers/base.py).
    "MAX_SEND_BYTES": 60_000,
    # Redis connections per process for the gate's own client (gate/admission.py pool_options);
    # above the API's per-process concurrency plus the sockets' and sweeper's needs.
    "REDIS_POOL_SIZE": 64,
    # How long one Redis reply may take before it counts as Redis not answering. Scripts take
    # microseconds in Redis; the margin is for a loaded box's scheduling, not for Redis.
    "REDIS_SOCKET_TIMEOUT_SECONDS": 5,
    # Requests of the v1 session API that run at once per process; the rest wait their turn
    # (api/views.py). Bounds threads wanting Redis and database connections in a burst.
    "API_CONCURRENCY": 16,
    # How long a process trusts a service token it has looked up (api/auth.py): a revoke is
    # seen at once by the process that made it, by the others within this many seconds.
    "API_TOKEN_CACHE_SECONDS": 5,
    "METRICS_TOKEN": "",
    "METRICS_ALLOWED_IPS": ["127.0.0.1", "::1"],
    "METRICS_RETENTION_SECONDS": 24 * 3600,
    # Attachments (README "Attachments"): the largest file one upload may carry, the largest
    # image (pixels) Pillow may decode (a small file can unpack to gigabytes: a decompression
    # bomb is refused, never rendered), how much text of a PDF or text file reaches the model,
    # and whether the model accepts image parts (OpenAI-compatible vision models do).
    "MAX_UPLOAD_BYTES": 10 * 1024 * 1024,
    "MAX_IMAGE_PIXELS": 40_000_000,
    "ATTACHMENT_TEXT_CHARS": 20_000,
    "THUMBNAIL_PX": 384,
    "BACKEND_ACCEPTS_IMAGES": False,
    # Without observed departures yet, assume a session lasts this long when estimating waits.
    "ASSUMED_SESSION_SECONDS": 600,
    # How long the newest page of a conversation is kept in Redis (chat/history_cache.py);
    # every write invalidates it at once, so this only bounds memory. 0 turns the cache off.
    "HISTORY_CACHE_SECONDS": 300,
    # Who writes the journal of session changes to the SQL record (gate/journal.py):
    # "background" (a thread per process, off the request path) or "inline" (the service that
    # made the change, before it returns: tests and one-off commands).
    "JOURNAL_FLUSH": "background",
    # How long a journal entry may wait before a server process writes it itself, because the
    # sweeper's writer is not doing so (not running, or stuck).
    "JOURNAL_STALE_MS": 2000,
}

# Sane upper bounds for values staff may set live (validated by GateSettings and set_limits).
LIMIT_BOUNDS: dict[str, tuple[int, int]] = {
    "max_active_sessions": (1, 10_000),
    "max_concurrent_queries": (1, 1_000),
    "idle_timeout_seconds": (10, 7 * 24 * 3600),
    # Pages renew presence every 15 s: a grace under three renewals would abandon open pages.
    "disconnect_grace_seconds": (45, 24 * 3600),
    "query_wait_timeout_seconds": (1, 3600),
}


def get(name: str) -> Any:
    """One knob: settings.CHATGATE[name], else the default."""
    overrides = getattr(settings, "CHATGATE", {}) or {}
    if name in overrides:
        return overrides[name]
    return DEFAULTS[name]
