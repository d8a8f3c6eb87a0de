"""The conversations API, mounted at /api/chat/ (the earlier chat service's contract, README
"Conversations"): each endpoint authenticates, parses, calls one use-case or selector, answers
JSON. A person sees only their own conversations: another person's id is a 404, never a 403,
so ids cannot be probed.

    GET    sessions?status=&q=&limit=&offset=          -> {"sessions", "total", "has_more"}
    POST   sessions {title?, metadata?}                -> 201 the new conversation
    GET    sessions/<id>                               -> the conversation + message_count
    PATCH  sessions/<id> {title?, status?}             -> the same, changed
    DELETE sessions/<id>                               -> {"session_id", "status": "deleted"}
    GET    sessions/<id>/messages?limit=&before=&after=&leaf= -> one page of the thread shown
    POST   sessions/<id>/messages, .../messages/stream -> asking over HTTP (chat_send.py)
    GET    openapi.json                                -> the OpenAPI description of the above
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from sessions_app.api.auth import authenticate, subject_for
from sessions_app.api.chat_schema import chat_openapi_document
from sessions_app.api.errors import bad_request, not_found
from sessions_app.api.views import _json_body, endpoint
from sessions_app.chat import conversations, selectors
from sessions_app.models import Conversation

LISTABLE = (Conversation.Status.ACTIVE, Conversation.Status.ARCHIVED)
METADATA_MAX_BYTES = 16 * 1024


def _int_param(request: HttpRequest, name: str, default: int | None, low: int, high: int) -> Any:
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"`{name}` must be a whole number.") from None
    if not low <= value <= high:
        raise bad_request(f"`{name}` must be between {low} and {high}.")
    return value


def _conversation(owner: Any, session_id: str) -> Any:
    try:
        return conversations.conversation_get(owner=owner, conversation_id=session_id)
    except conversations.ConversationNotFound:
        raise not_found("There is no such conversation.") from None


def _change(fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except conversations.ConversationNotFound:
        raise not_found("There is no such conversation.") from None
    except conversations.InvalidChange as exc:
        raise bad_request(str(exc)) from None


def _caller(request: HttpRequest, *, write: bool) -> Any:
    """The person whose conversations these are: a cookie's user, a token's owner, or the
    `?user_id=` a token with the act-for-users right names (as in /api/v1/)."""
    caller = authenticate(request, write=write)
    return subject_for(caller, request.GET.get("user_id"), provision=False, in_path=True)


# --- handlers ----------------------------------------------------------------------------------


def sessions_list(request: HttpRequest) -> HttpResponse:
    owner = _caller(request, write=False)
    status = request.GET.get("status", Conversation.Status.ACTIVE)
    if status not in LISTABLE:
        raise bad_request('`status` must be "active" or "archived".')
    q = request.GET.get("q", "").strip()
    if len(q) > 200 or "\x00" in q:
        raise bad_request("`q` must be at most 200 characters of text.")
    limit = _int_param(request, "limit", selectors.LIST_DEFAULT, 1, selectors.LIST_MAX)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    page = selectors.conversation_list(owner=owner, status=status, q=q, limit=limit, offset=offset)
    return JsonResponse({"sessions": page.sessions, "total": page.total, "has_more": page.has_more})


def sessions_create(request: HttpRequest) -> HttpResponse:
    owner = _caller(request, write=True)
    data = _json_body(request)
    metadata = data.get("metadata")
    if metadata is not None and len(str(metadata).encode()) > METADATA_MAX_BYTES:
        raise bad_request(f"`metadata` may hold at most {METADATA_MAX_BYTES} bytes.")
    conversation = _change(
        conversations.conversation_create,
        owner=owner,
        title=data.get("title"),
        metadata=metadata,
    )
    body = selectors.conversation_summary(conversation)
    return JsonResponse(body, status=201)


def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    owner = _caller(request, write=False)
    return JsonResponse(selectors.conversation_detail(_conversation(owner, session_id)))


def session_update(request: HttpRequest, session_id: str) -> HttpResponse:
    owner = _caller(request, write=True)
    data = _json_body(request)
    unknown = set(data) - {"title", "status"}
    if unknown:
        raise bad_request(f"Only `title` and `status` can be changed, not {sorted(unknown)}.")
    conversation = _change(
        conversations.conversation_update,
        owner=owner,
        conversation_id=session_id,
        title=data.get("title"),
        status=data.get("status"),
    )
    return JsonResponse(selectors.conversation_detail(conversation))


def session_delete(request: HttpRequest, session_id: str) -> HttpResponse:
    owner = _caller(request, write=True)
    conversation = _change(
        conversations.conversation_delete, owner=owner, conversation_id=session_id
    )
    return JsonResponse({"session_id": str(conversation.pk), "status": conversation.status})


def session_messages(request: HttpRequest, session_id: str) -> HttpResponse:
    owner = _caller(request, write=False)
    conversation = _conversation(owner, session_id)
    limit = _int_param(request, "limit", selectors.PAGE_DEFAULT, 1, selectors.PAGE_MAX)
    before = _int_param(request, "before", None, 1, 2**62)
    leaf = _int_param(request, "leaf", None, 1, 2**62)
    after = _int_param(request, "after", None, 1, 2**62)
    try:
        page = selectors.thread_page(
            conversation=conversation, limit=limit, before=before, leaf=leaf, after=after
        )
    except selectors.MessageNotFound as exc:
        raise not_found(f"Message {exc} is not in this conversation.") from None
    return JsonResponse(page)


def openapi(request: HttpRequest) -> HttpResponse:
    return JsonResponse(chat_openapi_document(request.build_absolute_uri("/api/chat")))


def unknown(request: HttpRequest, rest: str = "") -> HttpResponse:
    raise not_found(f"No API endpoint at {request.path}.")


sessions_view = endpoint(GET=sessions_list, POST=sessions_create)
session_view = endpoint(GET=session_detail, PATCH=session_update, DELETE=session_delete)
messages_view = endpoint(GET=session_messages)
openapi_view = endpoint(GET=openapi)
unknown_view = endpoint(GET=unknown, POST=unknown, PATCH=unknown, DELETE=unknown, PUT=unknown)
