"""Who is calling the API, and whom they may act for.

Two ways in, never mixed in one request:

* `Authorization: Bearer <token>` — a service. The token's hash is looked up (the raw token is
  never stored); a revoked or unknown token is a 401. Without `user_id` a token acts for its
  owner; with the "act for users" permission it may name any `user_id` (a username), and a name
  that does not exist yet is provisioned on create, without a usable password, as single
  sign-on would. An Authorization header always wins: a bad token is refused even when the
  request also carries a logged-in session cookie, so a misconfigured service fails loudly.
* The session cookie of a logged-in browser — it acts only on itself, and its writes must pass
  Django's CSRF check (the views are CSRF-exempt for bearer tokens, which are not sent
  ambiently, and this module enforces CSRF for cookie callers itself, as DRF does).
"""

from __future__ import annotations

import functools
import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, connections, router, transaction
from django.db.models.expressions import Col
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone

from sessions_app import conf
from sessions_app.api.errors import ApiError, bad_request, forbidden, not_found
from sessions_app.models import ApiToken, hash_token

# Django's default username rule (ASCIIUsernameValidator's shape, Unicode word characters).
USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}\Z")
# Writing `last_used_at` on every call would make every API request a database write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="chatgate"'}


@dataclass(frozen=True)
class Caller:
    user: Any  # the browser's user, or the token's owner
    token: ApiToken | None

    @property
    def via(self) -> str:
        """How a session this caller opens is recorded: a browser's is a page's."""
        return "api" if self.token is not None else "page"

    @property
    def may_act_for_others(self) -> bool:
        return self.token is not None and self.token.can_act_for_users

    @property
    def sees_lists(self) -> bool:
        """Staff and service tokens see who is active and queued; people see counts only."""
        return self.token is not None or bool(self.user.is_staff)

    @property
    def may_sweep(self) -> bool:
        return self.token is not None or bool(self.user.is_staff)

    @property
    def rate_ident(self) -> str:
        return f"token:{self.token.pk}" if self.token is not None else f"user:{self.user.pk}"


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _enforce_csrf(request: HttpRequest) -> None:
    check = _CsrfCheck(lambda _request: HttpResponse())
    check.process_request(request)
    # The check reads a form-encoded or multipart body to find `csrfmiddlewaretoken`: a body
    # over DATA_UPLOAD_MAX_MEMORY_SIZE or a broken multipart boundary raises from inside it.
    try:
        reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    except RequestDataTooBig as exc:
        raise ApiError(400, "TOO_LARGE", "The request body is too large for this API.") from exc
    except MultiPartParserError as exc:
        raise bad_request(
            "The multipart body could not be read; send the request body as JSON "
            "(Content-Type: application/json)."
        ) from exc
    if reason:
        raise ApiError(
            403,
            "CSRF_FAILED",
            f"CSRF check failed ({reason}). A browser must send the csrftoken cookie's value "
            "in the X-CSRFToken header; a service should use a bearer token instead.",
        )


# hash -> (monotonic expiry, the token row with its owner). A gateway sends the same token on
# every call: looking it up is a SQL join per request (the P9 profile, README), while what it
# says changes only when staff revoke it or deactivate its owner. Revoking through
# `api_token_revoke` or the admin forgets this process's cache at once; other processes stop
# accepting the token within API_TOKEN_CACHE_SECONDS.
_token_cache: dict[str, tuple[float, ApiToken]] = {}
_token_cache_lock = threading.Lock()
TOKEN_CACHE_MAX = 1000  # a handful of gateways in practice; the bound only stops a flood


def token_cache_forget() -> None:
    """Forgets every cached token (call after revoking one, or deactivating an owner)."""
    with _token_cache_lock:
        _token_cache.clear()


def _token_row(token_hash: str) -> ApiToken | None:
    ttl = float(conf.get("API_TOKEN_CACHE_SECONDS"))
    now = time.monotonic()
    if ttl > 0:
        with _token_cache_lock:
            cached = _token_cache.get(token_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
    token = ApiToken.objects.select_related("owner").filter(token_hash=token_hash).first()
    # Only good tokens are kept: an unknown or revoked one is asked again every time, so a
    # token issued a moment ago works at once and a flood of bad ones cannot fill the cache.
    if ttl > 0 and token is not None and token.is_active and token.owner.is_active:
        with _token_cache_lock:
            if len(_token_cache) >= TOKEN_CACHE_MAX:
                _token_cache.clear()
            _token_cache[token_hash] = (now + ttl, token)
    return token


def _token_caller(header: str) -> Caller:
    scheme, _, raw = header.strip().partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise ApiError(
            401,
            "UNAUTHENTICATED",
            "Unsupported Authorization header: send `Authorization: Bearer <token>`.",
            headers=BEARER_CHALLENGE,
        )
    token = _token_row(hash_token(raw))
    if token is None or not token.is_active:
        raise ApiError(
            401,
            "INVALID_TOKEN",
            "This API token is unknown or revoked; ask an operator for a new one "
            "(manage.py create_api_token).",
            headers=BEARER_CHALLENGE,
        )
    if not token.owner.is_active:
        raise ApiError(
            401,
            "INVALID_TOKEN",
            "This API token's owner account is deactivated.",
            headers=BEARER_CHALLENGE,
        )
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now  # the cached row too, or every request would write again
    return Caller(user=token.owner, token=token)


def authenticate(request: HttpRequest, *, write: bool) -> Caller:
    """The caller, or an ApiError (401 not authenticated, 403 CSRF failure on a write)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        return _token_caller(header)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise ApiError(
            401,
            "UNAUTHENTICATED",
            "Log in first (session cookie), or send `Authorization: Bearer <token>`.",
            headers=BEARER_CHALLENGE,
        )
    if write:
        _enforce_csrf(request)
    return Caller(user=user, token=None)


def subject_for(caller: Caller, user_id: str | None, *, provision: bool, in_path: bool) -> Any:
    """The person a request is about: the caller itself, or (tokens only) the named user.

    `provision` creates a missing user (create only); otherwise a missing user is a 404.
    A malformed name is a 400 in a body and a 404 in a path (no such resource).
    """
    user = named_subject(caller, user_id, in_path=in_path)
    if user is None:
        if not provision:
            raise not_found(f"No user named {user_id!r}.")
        user = provision_user(str(user_id))
    return user


def named_subject(caller: Caller, user_id: str | None, *, in_path: bool) -> Any | None:
    """`subject_for` without provisioning: None when the named user does not exist (yet)."""
    if user_id is None or user_id == "":
        return caller.user
    normal = unicodedata.normalize("NFKC", user_id)
    if normal != user_id:
        # Django stores usernames NFKC-normalised, so "ｗ0002" can only ever mean "w0002";
        # saying so beats creating a twin (IntegrityError) or acting for a look-alike.
        if in_path:
            raise not_found(f"No user named {user_id!r}; usernames are stored as {normal!r}.")
        raise bad_request(
            f"user_id {user_id!r} is not in normal form (NFKC); the same name is written "
            f"{normal!r}. Send it that way."
        )
    if not USERNAME_RE.match(user_id):
        if in_path:
            raise not_found(f"No user named {user_id!r}.")
        raise bad_request(
            "user_id must be a username: 1-150 letters, digits and the characters . @ + - _"
        )
    if user_id == caller.user.get_username():
        return caller.user
    if not caller.may_act_for_others:
        raise forbidden(
            "You may act only on your own session. Naming another user_id needs an API token "
            "with the act-for-users permission."
        )
    user = user_named(user_id)
    if user is not None and not user.is_active:
        raise forbidden(f"The account {user_id!r} is deactivated.")
    return user


@functools.cache
def _user_query(alias: str) -> tuple[str, list[str], list[Col]]:
    """(SQL, attribute names, columns) reading one user by username, built once per process."""
    User = get_user_model()
    quote = connections[alias].ops.quote_name
    fields = User._meta.concrete_fields
    table = User._meta.db_table
    columns = ", ".join(quote(str(field.column)) for field in fields)
    name = quote(str(next(f.column for f in fields if f.name == User.USERNAME_FIELD)))
    sql = f"SELECT {columns} FROM {quote(table)} WHERE {name} = %s"
    return sql, [field.attname for field in fields], [field.get_col(table) for field in fields]


def user_named(username: str) -> Any | None:
    """The user with this username, or None.

    One statement built once per process: `filter(...).first()` compiled its SQL anew on every
    call (0.72 ms against 0.1 ms here) and was 13% of a daphne's CPU per API create (README,
    "P9"). The row becomes a model the ORM's way: each column through the backend's and the
    field's converters (SQLite's text dates, 0/1 booleans), then `Model.from_db`.
    """
    User = get_user_model()
    alias = router.db_for_read(User)
    connection = connections[alias]
    sql, names, columns = _user_query(alias)
    with connection.cursor() as cursor:
        cursor.execute(sql, [username])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for value, column in zip(row, columns, strict=True):
        for convert in connection.ops.get_db_converters(column) + column.get_db_converters(
            connection
        ):
            value = convert(value, column, connection)
        values.append(value)
    return User.from_db(alias, names, values)


def provision_user(username: str) -> Any:
    """Creates a person named by a trusted service; two concurrent creates both get it."""
    User = get_user_model()
    try:
        with transaction.atomic():
            # No password given: Django stores an unusable one; the person signs in elsewhere.
            return User._default_manager.create_user(**{User.USERNAME_FIELD: username})  # type: ignore[attr-defined]
    except IntegrityError:
        return User._default_manager.get(**{User.USERNAME_FIELD: username})
