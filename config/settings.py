"""Settings for chatgate, read from the environment with safe defaults.

Every value an operator may need to change comes from an environment variable; the defaults
suit a developer's machine (`make run`). With DEBUG off, the secret key must come from the
environment and the security headers are strict.
"""

import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# Under pytest the dev secret is acceptable and HTTPS redirects would only get in the way.
TESTING = env_bool("CHATGATE_TESTING", False) or "pytest" in Path(sys.argv[0]).name

_DEV_SECRET = "dev-only-insecure-secret-key-set-SECRET_KEY-in-production-0123456789"
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Export SECRET_KEY (a long random string), "
            "or set DEBUG=1 for local development."
        )
    SECRET_KEY = _DEV_SECRET

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "sessions_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "sessions_app.middleware.RequestMetricsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "config.asgi.application"

# --- Database: SQLite by default, PostgreSQL (or anything dj-database-url reads) by DATABASE_URL.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets daphne's threads read while one writes; IMMEDIATE avoids the lock-upgrade
    # deadlock SQLite otherwise hits when two threads both read-then-write.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file (not :memory:) so that servers the tests start in other processes can share it;
    # the pid keeps two test runs on one machine apart.
    # In the temp dir: SQLite leaves its -wal/-shm files behind after the test run.
    _test_db = os.environ.get("CHATGATE_TEST_DB")
    if _test_db is None:
        _test_db = str(Path(tempfile.gettempdir()) / f"chatgate-test-{os.getpid()}.sqlite3")
        # A dead run with the same pid may have left its -wal/-shm behind: SQLite would replay
        # that old journal into the new test database (seen: "no such table" for a table
        # added since). Nobody else uses a file named after our own pid.
        for _leftover in (_test_db, f"{_test_db}-wal", f"{_test_db}-shm"):
            Path(_leftover).unlink(missing_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": _test_db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: admission state, channel layer and cache all live in one Redis server.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def env_sentinels(name: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (IPv6 as `[::1]:26379`; a bare host means Sentinel's 26379)."""
    sentinels = []
    for item in env_list(name, []):
        host, colon, port = item.rpartition(":")
        if not colon or "]" in port:  # no port given ("host", or "[::1]")
            host, port = item, "26379"
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"{name}: {item!r} is not host:port.")
        sentinels.append((host, int(port)))
    return sentinels


# With Sentinels, every Redis user (admission manager, channel layer, cache) asks them for the
# current master of REDIS_SENTINEL_MASTER, so a failover needs no restart; REDIS_URL then only
# gives the database number. Unset, REDIS_URL is the server, as before.
REDIS_SENTINELS = env_sentinels("REDIS_SENTINELS")
REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "")
if REDIS_SENTINELS and not REDIS_SENTINEL_MASTER:
    raise ImproperlyConfigured(
        "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: name the master the "
        "Sentinels monitor (the name in their `sentinel monitor <name> ...` line)."
    )
REDIS_SENTINEL_PASSWORD = os.environ.get("REDIS_SENTINEL_PASSWORD", "")
# The master's (and replicas') password; a password inside REDIS_URL also still works.
REDIS_PASSWORD = os.environ.get("REDIS_PASSWORD", "")
# The database number, as redis-py reads REDIS_URL (`/0` or `?db=0`; a unix socket's path is none).
_redis_url = urlparse(REDIS_URL)
_db = _redis_url.path.strip("/") if _redis_url.scheme != "unix" else ""
REDIS_DB = int(_db) if _db.isdigit() else int((parse_qs(_redis_url.query).get("db") or ["0"])[0])
# How we talk to the Sentinels themselves: a dead one must not stall discovery, the next is asked.
REDIS_SENTINEL_KWARGS: dict[str, Any] = {"socket_timeout": 1, "socket_connect_timeout": 1}
if REDIS_SENTINEL_PASSWORD:
    REDIS_SENTINEL_KWARGS["password"] = REDIS_SENTINEL_PASSWORD
_redis_password = {"password": REDIS_PASSWORD} if REDIS_PASSWORD else {}
# Every admission key is built from this prefix inside one hash tag (see redis_keys.py).
CHATGATE_REDIS_PREFIX = os.environ.get("CHATGATE_REDIS_PREFIX", "chatgate")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    **(
                        {
                            "master_name": REDIS_SENTINEL_MASTER,
                            "sentinels": REDIS_SENTINELS,
                            "sentinel_kwargs": REDIS_SENTINEL_KWARGS,
                            "db": REDIS_DB,
                        }
                        if REDIS_SENTINELS
                        else {"address": REDIS_URL}
                    ),
                    **_redis_password,
                    # redis-py 8 defaults socket_timeout to 5 s, the same as the layer's
                    # blocking pop, which then kills idle consumers (DESIGN.md §7).
                    "socket_timeout": None,
                    # redis-py 8's asyncio pool raises past its size instead of waiting.
                    "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 1000),
                    # After Redis restarts, a pooled connection is dead until used once: without
                    # one retry the first group_add on each process failed (issue 8, item 6).
                    "retry_on_error": [RedisConnectionError],
                    "retry": AsyncRetry(NoBackoff(), 1),
                }
            ],
            "prefix": f"{CHATGATE_REDIS_PREFIX}:asgi",
            # One list per process; position fan-out sends once per process, but chat
            # streams and per-person events may burst (DESIGN.md §7).
            "capacity": env_int("CHANNEL_LAYER_CAPACITY", 2000),
            "expiry": 60,
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        # With Sentinels: the master only (django-redis's SentinelClient would also read from
        # replicas, and the history cache must never read a stamp older than the last write).
        "LOCATION": (
            f"redis://{REDIS_SENTINEL_MASTER}/{REDIS_DB}" if REDIS_SENTINELS else REDIS_URL
        ),
        "KEY_PREFIX": f"{CHATGATE_REDIS_PREFIX}:cache",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 2,
            **({"PASSWORD": REDIS_PASSWORD} if REDIS_PASSWORD else {}),
            **(
                {
                    "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                    "SENTINELS": REDIS_SENTINELS,
                    "SENTINEL_KWARGS": REDIS_SENTINEL_KWARGS,
                }
                if REDIS_SENTINELS
                else {}
            ),
        },
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Mail (alerts to staff): printed to the log unless an SMTP server is configured.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "chatgate@localhost")
# The language of alert mails (the staff's, usually Korean).
ALERT_MAIL_LANGUAGE = os.environ.get("ALERT_MAIL_LANGUAGE", "ko")

LOGIN_URL = "/accounts/login/"
# Staff land on the console, everyone else on the chat page (views/chat.py after_login).
LOGIN_REDIRECT_URL = "/welcome"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Languages: the people are mostly Korean speakers; English is the fallback.
LANGUAGE_CODE = "en"
LANGUAGES = [("ko", _("Korean")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("TIME_ZONE", "Asia/Seoul")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
SERVE_STATIC = env_bool("SERVE_STATIC", True)

# --- Security defaults.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the chat page's JS reads it for the JSON fallback's writes
# JSON endpoints answer a failed CSRF check in JSON (the README promises it); pages keep HTML.
CSRF_FAILURE_VIEW = "sessions_app.views.csrf.csrf_failure"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG and not TESTING:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Uploads and request bodies: the API takes small JSON documents only.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# Attachments are stored through Django's storage API under the "attachments" alias: a local
# folder outside STATIC_ROOT by default (never served by a static server: files are served only
# to their owner, by a view), any storage backend by CHATGATE_ATTACHMENTS_STORAGE (a dotted
# class path, e.g. storages.backends.s3.S3Storage, configured by its own settings).
ATTACHMENTS_ROOT = Path(
    os.environ.get(
        "CHATGATE_UPLOAD_ROOT",
        str(Path(tempfile.gettempdir()) / f"chatgate-test-uploads-{os.getpid()}")
        if TESTING
        else str(BASE_DIR / "uploads"),
    )
)
_ATTACHMENTS_BACKEND = os.environ.get(
    "CHATGATE_ATTACHMENTS_STORAGE", "django.core.files.storage.FileSystemStorage"
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": {
        "BACKEND": _ATTACHMENTS_BACKEND,
        "OPTIONS": (
            {"location": str(ATTACHMENTS_ROOT), "base_url": None}
            if _ATTACHMENTS_BACKEND.endswith("FileSystemStorage")
            else {}
        ),
    },
}
# Files over this size are spooled to a temporary file while a request is parsed, not kept in
# memory (uploads are refused past CHATGATE_MAX_UPLOAD_BYTES by the upload view itself).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "sessions_app": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
        "django": {"handlers": ["console"], "level": "WARNING"},
    },
}

# --- chatgate's own knobs (defaults for the live limits; GateSettings overrides at run time).
CHATGATE = {
    "MAX_ACTIVE_SESSIONS": env_int("MAX_ACTIVE_SESSIONS", 20),
    "MAX_CONCURRENT_QUERIES": env_int("MAX_CONCURRENT_QUERIES", 10),
    "IDLE_TIMEOUT_SECONDS": env_int("IDLE_TIMEOUT_SECONDS", 30 * 60),
    "DISCONNECT_GRACE_SECONDS": env_int("DISCONNECT_GRACE_SECONDS", 120),
    "QUERY_WAIT_TIMEOUT_SECONDS": env_int("QUERY_WAIT_TIMEOUT_SECONDS", 60),
    "LEASE_TTL_SECONDS": env_int("LEASE_TTL_SECONDS", 30),
    "GENERATION_MAX_SECONDS": env_int("GENERATION_MAX_SECONDS", 120),
    "PRIORITY_LEAD": env_int("PRIORITY_LEAD", 20),
    "SWEEP_INTERVAL_SECONDS": float(os.environ.get("SWEEP_INTERVAL_SECONDS", "1.0")),
    "CHAT_BACKEND": os.environ.get("CHAT_BACKEND", "echo"),
    "ECHO_TOKEN_DELAY_SECONDS": float(os.environ.get("ECHO_TOKEN_DELAY_SECONDS", "0.05")),
    "OPENAI_BASE_URL": os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8001/v1"),
    "OPENAI_MODEL": os.environ.get("OPENAI_MODEL", "default"),
    "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", ""),
    "OPENAI_HISTORY_MESSAGES": env_int("OPENAI_HISTORY_MESSAGES", 12),
    "CHAT_RATE_PER_MINUTE": env_int("CHAT_RATE_PER_MINUTE", 30),
    "API_CREATE_RATE_PER_MINUTE": env_int("API_CREATE_RATE_PER_MINUTE", 30),
    # A service token opens sessions for many people: its own, larger budget (api/views.py).
    "API_TOKEN_CREATE_RATE_PER_MINUTE": env_int("API_TOKEN_CREATE_RATE_PER_MINUTE", 600),
    "MAX_MESSAGE_BYTES": env_int("MAX_MESSAGE_BYTES", 64 * 1024),
    "REDIS_POOL_SIZE": env_int("REDIS_POOL_SIZE", 64),
    "REDIS_SOCKET_TIMEOUT_SECONDS": env_int("REDIS_SOCKET_TIMEOUT_SECONDS", 5),
    "API_CONCURRENCY": env_int("API_CONCURRENCY", 16),
    "API_TOKEN_CACHE_SECONDS": env_int("API_TOKEN_CACHE_SECONDS", 5),
    "METRICS_TOKEN": os.environ.get("METRICS_TOKEN", ""),
    "METRICS_ALLOWED_IPS": env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"]),
    "METRICS_RETENTION_SECONDS": env_int("METRICS_RETENTION_SECONDS", 24 * 3600),
    "HISTORY_CACHE_SECONDS": env_int("HISTORY_CACHE_SECONDS", 300),
    # Tests read the record right after a service call: there it is written before returning.
    "JOURNAL_FLUSH": os.environ.get("JOURNAL_FLUSH", "inline" if TESTING else "background"),
    "JOURNAL_STALE_MS": env_int("JOURNAL_STALE_MS", 2000),
    "MAX_UPLOAD_BYTES": env_int("CHATGATE_MAX_UPLOAD_BYTES", 10 * 1024 * 1024),
    "MAX_IMAGE_PIXELS": env_int("CHATGATE_MAX_IMAGE_PIXELS", 40_000_000),
    "ATTACHMENT_TEXT_CHARS": env_int("CHATGATE_ATTACHMENT_TEXT_CHARS", 20_000),
    "BACKEND_ACCEPTS_IMAGES": env_bool("CHATGATE_BACKEND_ACCEPTS_IMAGES", False),
}
