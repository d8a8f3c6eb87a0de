"""The person's `/ws/chat/` socket: their place in the queue, then their chat (DESIGN.md §3).

Connecting opens or resumes the person's session and answers with `queue.status` at once.
Positions come from this process's fan-out registry (fanout.py); per-person events
(`session.activated`, `session.closed`) and the chat itself go through the session's group, so
every tab of the person, on any server process, sees the same conversation.

Answers: each `message` is recorded as pending and "kicks" this socket's worker, which takes the
session's generation slot and answers the session's *oldest* pending message. The slot engine
grants one lease per session at a time, in ticket order, so messages from two tabs on two
processes are answered one at a time, in the order they were recorded. Capacity is never freed
by `disconnect` alone: leases expire and presence stops being renewed when a process dies.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async

from sessions_app import conf, notifications
from sessions_app.chat import generation, messages
from sessions_app.chat.backends import BackendError, ChatTurn, StreamEnd, get_backend
from sessions_app.consumers import base
from sessions_app.consumers.base import GuardedJsonConsumer
from sessions_app.fanout import Registry, fanout_mode, get_registry, next_version
from sessions_app.gate import selectors, services
from sessions_app.gate.admission import GateUnavailable
from sessions_app.models import ChatMessage
from sessions_app.ratelimit import rate_check

logger = logging.getLogger(__name__)

CLIENT_TYPES = ("message", "typing", "cancel", "heartbeat", "leave")
# Close codes (4000-4999 are the application's): the page does not reconnect after these.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_SESSION_ENDED = 4000
# Redis unreachable; the page reconnects with backoff (daphne cannot send 1013: base.py).
CLOSE_TRY_AGAIN = base.CLOSE_TRY_AGAIN
UNAVAILABLE_RETRY_SECONDS = 5
HEARTBEAT_MIN_INTERVAL = 1.0

db = database_sync_to_async


def _history_turns(session_id: str, question_id: int, limit: int) -> list[ChatTurn]:
    """Recent answered turns as context, ending with the question being answered."""
    rows = list(
        ChatMessage.objects.filter(
            session_id=uuid.UUID(str(session_id)), status=ChatMessage.Status.DONE
        )
        .exclude(role=ChatMessage.Role.SYSTEM)
        .order_by("-sequence")[: max(limit - 1, 0)]
    )
    rows.reverse()
    question = ChatMessage.objects.get(pk=question_id)
    return [ChatTurn(r.role, r.content) for r in rows] + [ChatTurn("user", question.content)]


class ChatConsumer(GuardedJsonConsumer):
    session_id: str = ""
    # Per-socket budgets (burst, per second), far above what a page sends (a typing frame every
    # 3 s, a heartbeat every 15 s); a new frame type shares `other_budget` until it gets one.
    frame_budgets = {
        "message": (10.0, 1.0),
        "typing": (10.0, 2.0),
        "cancel": (10.0, 2.0),
        "heartbeat": (5.0, 1.0),
        "leave": (5.0, 0.5),
    }
    text_caps = {"message": {"content": "MAX_MESSAGE_CHARS"}}

    # --- lifecycle --------------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # `disconnect` may never run (a crashed handler, daphne cutting off a busy consumer):
        # whatever ends this consumer takes it out of the registry, or the registry would keep
        # touching its person's presence forever and the place would never be freed.
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._forget()

    def _forget(self) -> None:
        registry = getattr(self, "registry", None)
        if registry is not None:
            registry.discard(self)
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.cancel()  # the slot is released (shielded) as the worker unwinds

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)  # before accept: the handshake fails
            return
        self.user = user
        self.registry: Registry | None = None
        self.worker: asyncio.Task[None] | None = None
        self.runs_wanted = 0
        # (question id, answer id, streaming task, stop requested) of the answer in progress
        self.current: tuple[int, int, asyncio.Task[None]] | None = None
        self.stop_requested = False
        try:
            outcome = await db(services.session_open)(user=user, via="page")
        except GateUnavailable:
            await self.accept()
            await self._unavailable()
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        self.session_id = outcome.session_id
        await self.accept()
        await self.channel_layer.group_add(
            notifications.session_group(self.session_id), self.channel_name
        )
        if fanout_mode() == "plain":
            await self.channel_layer.group_add(notifications.QUEUE_GROUP, self.channel_name)
        else:
            self.registry = get_registry()
            self.registry.add(self)
        await self._send_status()
        await self._touch("presence")
        if outcome.state == "active" and await db(messages.chat_question_next)(
            session_id=self.session_id
        ):
            self._kick()  # a message left unanswered by a closed tab

    async def disconnect(self, code: int) -> None:
        if not self.session_id:
            return
        self._forget()
        try:
            await self.channel_layer.group_discard(
                notifications.session_group(self.session_id), self.channel_name
            )
            if fanout_mode() == "plain":
                await self.channel_layer.group_discard(notifications.QUEUE_GROUP, self.channel_name)
        except Exception:  # memberships expire by themselves
            logger.debug("group_discard failed", exc_info=True)

    # --- frames from the page ---------------------------------------------------------------

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind not in CLIENT_TYPES:
            await self._error("BAD_REQUEST", f"Unknown frame type {kind!r}.")
            return
        try:
            await getattr(self, f"on_{kind}")(content)
        except GateUnavailable:
            await self._unavailable()

    async def on_message(self, content: dict[str, Any]) -> None:
        text = content.get("content")
        if not isinstance(text, str) or not text.strip():
            await self._error("BAD_REQUEST", "A message needs some text in `content`.")
            return
        limit = int(conf.get("CHAT_RATE_PER_MINUTE"))
        decision = await db(rate_check)(scope="chat", ident=str(self.user.pk), limit=limit)
        if not decision.allowed:
            await self._error(
                "RATE_LIMIT",
                f"At most {limit} messages a minute; try again shortly.",
                retry_after=decision.retry_after,
            )
            return
        try:
            message = await db(messages.chat_message_add)(session_id=self.session_id, content=text)
        except services.NotActive:
            await self._error("NOT_ACTIVE", "You can chat once it is your turn.")
            return
        await self._to_session(
            {
                "type": "message",
                "message_id": message.pk,
                "sequence": message.sequence,
                "role": "user",
                "content": text,
                "client_id": content.get("client_id"),
            }
        )
        self._kick()

    async def on_typing(self, content: dict[str, Any]) -> None:
        # Accepted and validated; the person's other tabs need not know, and typing is not
        # "chat activity" for the idle timeout (only sent messages are).
        if not isinstance(content.get("is_typing"), bool):
            await self._error("BAD_REQUEST", "`is_typing` must be true or false.")

    async def on_cancel(self, content: dict[str, Any]) -> None:
        message_id = content.get("message_id")
        if message_id is not None and (
            not isinstance(message_id, int) or isinstance(message_id, bool)
        ):
            await self._error("BAD_REQUEST", "`message_id` must be a number.")
            return
        if message_id is not None:
            # Not started yet: it will not be answered. Started: whoever streams it stops.
            await db(messages.chat_question_cancel)(
                session_id=self.session_id, message_id=message_id
            )
        await self.channel_layer.group_send(
            notifications.session_group(self.session_id),
            {"type": "chat.cancel", "message_id": message_id},
        )

    async def on_heartbeat(self, content: dict[str, Any]) -> None:
        """Presence, and an absolute status back; `keep: true` ("still here") is activity.

        Each costs a script and a few reads, so a socket gets at most one a second answered
        (pages send one every 15 s; anything faster is a flood, dropped silently)."""
        now = time.monotonic()
        if now - getattr(self, "last_heartbeat", 0.0) < HEARTBEAT_MIN_INTERVAL:
            return
        self.last_heartbeat = now
        await self._touch("activity" if content.get("keep") is True else "presence")
        await self._send_status()

    async def on_leave(self, content: dict[str, Any]) -> None:
        await db(services.session_close)(session_id=self.session_id, reason="user")
        # This tab is told at once and directly (group pushes are at-most-once, and a page that
        # asked to leave must not wait on one); other tabs hear it through the session group.
        await self.session_closed({"reason": "user", "note": ""})

    # --- events from the channel layer ------------------------------------------------------

    async def session_activated(self, event: dict[str, Any]) -> None:
        if self.registry is not None and (entry := self.registry.entry(self)) is not None:
            if entry.state == "active":
                return  # the registry saw the promotion first and has told the page
            entry.state, entry.position = "active", 0
        await self.send_frame({"type": "session.activated", "session_id": event["session_id"]})

    async def session_closed(self, event: dict[str, Any]) -> None:
        if self.registry is not None and (entry := self.registry.entry(self)) is not None:
            entry.state = "closed"
        if self.worker is not None:
            self.worker.cancel()
        await self.send_frame(
            {"type": "session.closed", "reason": event["reason"], "note": event.get("note", "")}
        )
        await self.close(code=CLOSE_SESSION_ENDED)

    async def queue_changed(self, event: dict[str, Any]) -> None:
        await self._send_status()  # FANOUT_MODE=plain only: one read per socket per change

    async def banner_changed(self, event: dict[str, Any]) -> None:
        await self.send_frame({"type": "banner.changed", "message": event.get("message", "")})

    async def chat_frame(self, event: dict[str, Any]) -> None:
        await self.send_frame(event["frame"])

    async def chat_cancel(self, event: dict[str, Any]) -> None:
        if self.current is None:
            return
        question_id, answer_id, task = self.current
        wanted = event.get("message_id")
        if wanted is None or wanted in (question_id, answer_id):
            self.stop_requested = True
            task.cancel()

    # --- answering --------------------------------------------------------------------------

    def _kick(self) -> None:
        self.runs_wanted += 1
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        while self.runs_wanted > 0:
            self.runs_wanted -= 1
            try:
                await self._answer_oldest()
            except GateUnavailable:
                await self._unavailable()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("answering failed in session %s", self.session_id)

    async def _on_wait(self, place: int) -> None:
        await self.send_frame({"type": "system", "event": "waiting_for_capacity", "place": place})

    async def _answer_oldest(self) -> None:
        question = None
        closing: list[dict[str, Any]] = []
        try:
            try:
                async with generation.generation_slot(
                    session_id=self.session_id, on_wait=self._on_wait
                ):
                    question = await db(messages.chat_question_next)(session_id=self.session_id)
                    if question is None:
                        return  # another tab's worker answered it, or it was cancelled
                    await self._generate(question, closing)
            finally:
                # Only once the slot is released: a page that sees stream_end (after Stop,
                # say) can count on the slot being free.
                for frame in closing:
                    await self._to_session(frame)
        except services.NotActive:
            await self._error("NOT_ACTIVE", "Your session is not active.")
        except generation.CapacityTimeout:
            pending = await db(messages.chat_question_next)(session_id=self.session_id)
            if pending is not None:
                await db(messages.chat_answer_finish)(
                    question_id=pending.pk,
                    answer_id=None,
                    content="",
                    status=ChatMessage.Status.FAILED,
                )
            await self._to_session(
                {
                    "type": "error",
                    "code": "CAPACITY_TIMEOUT",
                    "message": "All answer slots stayed busy; please send it again.",
                    "message_id": pending.pk if pending is not None else None,
                }
            )
        except generation.SlotLost:
            await self._to_session(
                {
                    "type": "system",
                    "event": "slot_lost",
                    "message_id": question.pk if question is not None else None,
                }
            )

    async def _generate(self, question: ChatMessage, closing: list[dict[str, Any]]) -> None:
        """Streams the answer to `question`; appends the frames that end it to `closing`."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await db(messages.chat_answer_start)(session_id=self.session_id)
        limit = int(conf.get("OPENAI_HISTORY_MESSAGES"))
        turns = await db(_history_turns)(self.session_id, question.pk, limit)
        await self._to_session(
            {"type": "stream_start", "message_id": answer.pk, "reply_to": question.pk}
        )
        parts: list[str] = []
        end = StreamEnd()
        failure: str | None = None
        backend = get_backend()

        async def stream() -> None:
            async for index, piece in _aenumerate(backend.stream(turns, end)):
                parts.append(piece)
                await self._to_session(
                    {
                        "type": "stream_chunk",
                        "message_id": answer.pk,
                        "content": piece,
                        "index": index,
                    }
                )

        task = asyncio.create_task(stream())
        self.current = (question.pk, answer.pk, task)
        self.stop_requested = False
        status = ChatMessage.Status.DONE
        try:
            await asyncio.wait({task})
            if task.cancelled():
                status = ChatMessage.Status.CANCELLED
            elif (exc := task.exception()) is not None:
                status = ChatMessage.Status.FAILED
                failure = str(exc) if isinstance(exc, BackendError) else "The answer failed."
                if not isinstance(exc, BackendError):
                    logger.error("backend crashed", exc_info=exc)
        except asyncio.CancelledError:
            task.cancel()  # the socket went away or the session ended: stop, record, re-raise
            status = ChatMessage.Status.CANCELLED
            raise
        finally:
            self.current = None
            await backend.aclose()
            latency_ms = int((loop.time() - started) * 1000)
            record = asyncio.ensure_future(
                db(messages.chat_answer_finish)(
                    question_id=question.pk,
                    answer_id=answer.pk,
                    content="".join(parts),
                    status=status,
                    tokens=end.tokens,
                    latency_ms=latency_ms,
                )
            )
            await asyncio.shield(record)
            closing.append(
                {
                    "type": "stream_end",
                    "message_id": answer.pk,
                    "tokens_used": end.tokens,
                    "latency_ms": latency_ms,
                    "status": status,
                }
            )
            if failure is not None:
                closing.append(
                    {
                        "type": "error",
                        "code": "BACKEND_ERROR",
                        "message": failure,
                        "message_id": answer.pk,
                    }
                )

    # --- helpers ----------------------------------------------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Sends one frame; a socket that closed meanwhile is not an error."""
        try:
            await self.send_json(frame)
        except Exception:
            logger.debug("send to a closed socket dropped", exc_info=True)

    async def _to_session(self, frame: dict[str, Any]) -> None:
        """Chat frames go to every socket of the session (all tabs, all processes)."""
        await self.channel_layer.group_send(
            notifications.session_group(self.session_id), {"type": "chat.frame", "frame": frame}
        )

    async def _send_status(self) -> None:
        if self.registry is not None:
            await self.registry.refresh(self)
            return
        version = next_version()
        status = await db(selectors.session_status)(self.session_id)
        await self.send_frame({"type": "queue.status", **status.as_dict(), "version": version})

    async def _touch(self, kind: str) -> None:
        await db(services.session_touch)(session_id=self.session_id, kind=kind)

    async def _unavailable(self) -> None:
        await self._error(
            "UNAVAILABLE",
            "The service is briefly unavailable; retrying.",
            retry_after=UNAVAILABLE_RETRY_SECONDS,
        )

    async def _error(self, code: str, message: str = "", *, retry_after: int | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message or code}
        if retry_after is not None:
            frame["retry_after"] = retry_after
        await self.send_frame(frame)


async def _aenumerate(iterable: Any) -> Any:
    index = 0
    async for item in iterable:
        yield index, item
        index += 1
