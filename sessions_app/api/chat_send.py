"""Asking over HTTP (the earlier chat service's "HTTP alternative", reference 001):

    POST sessions/<id>/messages        {content, message_type?, metadata?} -> 201 {message_id, ...}
    POST sessions/<id>/messages/stream {content, ...} -> text/event-stream of the answer

The question is recorded by the same use-case as one asked on the page (chat/messages.py), is
announced on every open page of the person with the same `message` frame, and is answered
through the gate: the seat's generation slot, the seat's order (chat/runner.py says who runs
the answer when no page is open). The stream is the person's group filtered to this answer, so
it shows the answer whoever writes it (this process, or a page's socket on another).

These views are async (daphne serves them on its loop; the stream holds no thread while it
waits); every database or Redis step runs in a thread through sync_to_async.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from sessions_app import conf, notifications
from sessions_app.api import chat_views
from sessions_app.api.auth import Caller, authenticate, subject_for
from sessions_app.api.errors import ApiError, bad_request, not_found, unavailable
from sessions_app.api.views import (
    _json_body,
    _rate_limited,
    person_create_limit,
    token_create_limit,
)
from sessions_app.chat import answering, frames, messages, runner
from sessions_app.chat.conversations import ConversationNotFound
from sessions_app.gate import eta, selectors, services
from sessions_app.gate.admission import GateUnavailable
from sessions_app.models import ChatMessage
from sessions_app.ratelimit import Limit

logger = logging.getLogger(__name__)

METADATA_MAX_BYTES = 16 * 1024
# A comment line this often keeps proxies from closing an idle stream and lets daphne notice a
# client that went away while the answer waits for a slot.
KEEPALIVE_SECONDS = 15.0
# After a failed answer's stream_end, its `error` frame (the reason) follows at once.
ERROR_GRACE_SECONDS = 2.0

AsyncHandler = Callable[..., Awaitable[HttpResponseBase]]


def async_endpoint(**handlers: AsyncHandler) -> Any:
    """api.views.endpoint for async handlers: one handler per method, every failure JSON."""
    allowed = ", ".join(sorted(handlers))

    @csrf_exempt  # cookie callers are CSRF-checked by api.auth, tokens need none
    async def view(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        handler = handlers.get(request.method or "")
        try:
            if handler is None:
                raise ApiError(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"{request.method} is not allowed here; use {allowed}.",
                    headers={"Allow": allowed},
                )
            response: HttpResponseBase = await handler(request, **kwargs)
        except ApiError as exc:
            response = exc.response()
        except GateUnavailable:
            response = unavailable(
                "The admission store is unreachable; try again shortly."
            ).response()
        except DatabaseError:
            logger.exception("database error in %s", request.path)
            response = unavailable("The database did not answer; try again shortly.").response()
        except Exception:
            logger.exception("unexpected error in %s", request.path)
            response = ApiError(500, "INTERNAL", "Something went wrong on our side.").response()
        response["Cache-Control"] = "no-store"
        return response

    return view


# --- the question ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    owner: Any
    seat_id: str
    asked: messages.Asked

    @property
    def answer_id(self) -> int:
        return int(self.asked.answer.pk)

    def frame(self) -> dict[str, Any]:
        return frames.question_frame(
            self.asked, client_id=None, owner_name=self.owner.get_username()
        )


def _question(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    content = data.get("content")
    if not isinstance(content, str) or not content.strip() or "\x00" in content:
        raise bad_request("A message needs some text in `content`.")
    if not _encodable(content):
        raise bad_request("`content` may not contain unpaired surrogate characters.")
    limit = int(conf.get("MAX_MESSAGE_CHARS"))
    if len(content) > limit:
        raise ApiError(400, "TOO_LARGE", f"At most {limit} characters a message.")
    kind = data.get("message_type", "text")
    if kind != ChatMessage.Kind.TEXT:
        # Files arrive through POST .../files; system messages are the server's own.
        raise bad_request('`message_type` must be "text" here (files go to .../files).')
    metadata = data.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise bad_request("`metadata` must be a JSON object.")
    try:
        # Stored as JSON text: NaN/Infinity and lone surrogates would be refused by the database.
        size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False).encode())
    except (ValueError, UnicodeEncodeError):
        raise bad_request("`metadata` must be plain JSON (no NaN, no lone surrogates).") from None
    if size > METADATA_MAX_BYTES:
        raise bad_request(f"`metadata` may hold at most {METADATA_MAX_BYTES} bytes.")
    return content, metadata


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _queued(position: int) -> ApiError:
    return ApiError(
        409,
        "QUEUED",
        f"You are number {position} in the queue; ask again once your seat is active "
        "(GET /api/v1/session/position/<user_id> says when, and keeps your place).",
        extra={
            "position": position,
            "eta_seconds": eta.eta_seconds(position, selectors.departure_rate()),
        },
    )


def _no_seat() -> ApiError:
    return ApiError(
        409,
        "NO_SEAT",
        "You have no seat: open the chat page, or POST /api/v1/session/create, and ask again "
        "once it is active.",
        extra={"position": None, "eta_seconds": None},
    )


def seat_for_asking(caller: Caller, subject: Any) -> str:
    """The subject's active seat. A token (which may act for the subject: subject_for checked)
    takes one by the rules of POST /api/v1/session/create when there is none; a browser's
    seat is its page's. Queued or seatless: a 409 saying where the person stands."""
    seat_id = services.session_live_for_user(subject)
    if seat_id is None:
        if caller.token is None:
            raise _no_seat()
        _rate_limited(*token_create_limit(caller), person_create_limit(subject))
        opened = services.session_open(user=subject, via=caller.via)
        seat_id, state, position = opened.session_id, opened.state, opened.position
    else:
        # Asking is presence, as polling the position is (DESIGN.md §1).
        touched = services.session_touch(session_id=seat_id, kind="poll")
        state, position = touched.state, touched.position
    if state == "queued":
        raise _queued(position)
    if state != "active":
        raise _no_seat()
    return seat_id


def _who(request: HttpRequest) -> tuple[Caller, Any]:
    """The caller and the person asking (a token with the right may name `?user_id=`)."""
    caller = authenticate(request, write=True)
    subject = subject_for(caller, request.GET.get("user_id"), provision=False, in_path=True)
    return caller, subject


def _send_question(request: HttpRequest, session_id: str, caller: Caller, subject: Any) -> Sent:
    """Checks, finds or takes the seat, records the question (runs in a thread)."""
    data = _json_body(request)
    content, metadata = _question(data)
    conversation = chat_views._conversation(subject, session_id)  # 404 before any seat work
    chat_limit = int(conf.get("CHAT_RATE_PER_MINUTE"))
    _rate_limited((Limit("chat", str(subject.pk), chat_limit), subject.get_username()))
    seat_id = seat_for_asking(caller, subject)
    try:
        asked = messages.message_ask(
            owner=subject, seat_id=seat_id, content=content, conversation_id=conversation.pk
        )
    except services.NotActive:
        raise _no_seat() from None  # it ended between the check and the write
    except ConversationNotFound:
        raise not_found("There is no such conversation.") from None
    if metadata:
        ChatMessage.objects.filter(pk=asked.question.pk).update(client_metadata=metadata)
    return Sent(owner=subject, seat_id=seat_id, asked=asked)


async def _announce_and_answer(sent: Sent) -> None:
    """Every page of the person shows the question; this process answers it (runner.py)."""
    await runner.GroupSink(sent.owner.pk).emit(sent.frame())
    runner.answer_soon(seat_id=sent.seat_id, user_pk=sent.owner.pk)


async def message_send(request: HttpRequest, session_id: str) -> HttpResponse:
    caller, subject = await sync_to_async(_who)(request)
    sent = await sync_to_async(_send_question)(request, session_id, caller, subject)
    await _announce_and_answer(sent)
    question = sent.asked.question
    return JsonResponse(
        {
            "message_id": question.pk,
            "status": "sent",
            "created_at": question.created_at.isoformat(),
            "session_id": str(sent.asked.conversation.pk),
            "answer_id": sent.answer_id,
        },
        status=201,
    )


# --- the stream --------------------------------------------------------------------------------


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    """One SSE event; `type` is in the data too, as the earlier service's clients read it."""
    body = json.dumps({"type": kind, **payload}, ensure_ascii=False)
    return f"event: {kind}\ndata: {body}\n\n".encode()


async def _abandon(sent: Sent) -> None:
    """The client went away before the answer ended: stop it, so its slot is freed now.
    Not started → cancelled in the record (pages close its placeholder); being written → this
    process stops it at once, and the person's group tells any other process writing it."""
    outcome = await sync_to_async(messages.message_cancel)(
        owner=sent.owner, message_id=sent.answer_id
    )
    sink = runner.GroupSink(sent.owner.pk)
    for answer_id in outcome.not_started:
        await sink.emit(
            {
                "type": "stream_end",
                "message_id": answer_id,
                "conversation_id": outcome.conversation_id,
                "tokens_used": 0,
                "latency_ms": 0,
                "status": ChatMessage.Status.CANCELLED,
            }
        )
    if outcome.streaming:
        answering.stop(outcome.streaming)
        await get_channel_layer().group_send(
            sink.group, {"type": "chat.cancel", "message_ids": outcome.streaming}
        )


async def _answer_events(sent: Sent, channel: str) -> AsyncIterator[bytes]:
    """The answer's events from the person's group; on disconnect (Django cancels the stream's
    task, or closes this iterator) the answer is abandoned before the iterator ends."""
    layer = get_channel_layer()
    group = notifications.user_group(sent.owner.pk)
    loop = asyncio.get_running_loop()
    ended = False
    started = False
    close_at: float | None = None
    try:
        yield _event("message", sent.frame())
        while True:
            wait = KEEPALIVE_SECONDS
            if close_at is not None:
                wait = close_at - loop.time()
                if wait <= 0:
                    return
            try:
                async with asyncio.timeout(wait):
                    message = await layer.receive(channel)
            except TimeoutError:
                if close_at is None:
                    yield b": keepalive\n\n"
                continue
            if message.get("type") != "chat.frame":
                continue
            frame = frames.with_protocol_fields(message["frame"])
            kind = frame.get("type")
            if kind == "system" and frame.get("event") == "waiting_for_capacity":
                if not started:  # the seat's query waits; this answer is at or behind it
                    place = frame.get("place")
                    yield _event(
                        "waiting_for_capacity",
                        {"message_id": sent.answer_id, "position": place, "place": place},
                    )
            elif kind == "error" and frame.get("code") == "NOT_ACTIVE" and not started:
                # The seat ended before this answer started (runner.py): it will not be
                # answered; the finally below records it cancelled.
                yield _event(kind, frame)
                return
            elif frame.get("message_id") != sent.answer_id:
                continue
            elif kind in ("stream_start", "stream_chunk"):
                started = True
                yield _event(kind, frame)
            elif kind == "stream_end":
                ended = True
                yield _event(kind, frame)
                if frame.get("status") != ChatMessage.Status.FAILED:
                    return
                close_at = loop.time() + ERROR_GRACE_SECONDS
            elif kind == "error":
                yield _event(kind, frame)
                if ended:
                    return
    finally:
        try:
            if not ended:
                await asyncio.shield(_abandon(sent))
        except Exception:
            logger.warning("abandoning answer %s failed", sent.answer_id, exc_info=True)
        finally:
            try:
                await asyncio.shield(layer.group_discard(group, channel))
            except Exception:  # the membership expires by itself
                logger.debug("group_discard failed", exc_info=True)


async def message_stream(request: HttpRequest, session_id: str) -> HttpResponseBase:
    caller, subject = await sync_to_async(_who)(request)
    layer = get_channel_layer()
    # The default prefix, like every consumer's (runner.py says why).
    channel = await layer.new_channel()
    group = notifications.user_group(subject.pk)
    # Listening before the question is recorded: a page's socket on another process may start
    # answering it at once, and no frame of the answer may be missed.
    await layer.group_add(group, channel)
    try:
        sent = await sync_to_async(_send_question)(request, session_id, caller, subject)
    except BaseException:
        await asyncio.shield(layer.group_discard(group, channel))
        raise
    await _announce_and_answer(sent)
    response = StreamingHttpResponse(
        _answer_events(sent, channel), content_type="text/event-stream; charset=utf-8"
    )
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


async def _messages_get(request: HttpRequest, session_id: str) -> HttpResponse:
    response: HttpResponse = await sync_to_async(_messages_list_view)(
        request, session_id=session_id
    )
    return response


_messages_list_view = chat_views.messages_view  # the sync GET endpoint (paging)

messages_view = async_endpoint(GET=_messages_get, POST=message_send)
stream_view = async_endpoint(POST=message_stream)
