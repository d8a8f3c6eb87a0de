"""The person's `/ws/chat/` socket: their place in the queue, then their conversations
(DESIGN.md §3; the frames are in the conversations contract, README "Conversations").

Connecting opens or resumes the person's seat and answers with `queue.status` at once.
Positions come from this process's fan-out registry (fanout.py); seat events
(`session.activated`, `session.closed`) go through the seat's group, and chat frames through
the person's group, so every page of the person, on any server process, sees the same thing.

Answers: each question is recorded with its answer placeholder and "kicks" this socket's
worker, which runs the answering loop (chat/answering.py): it takes the seat's generation slot
and answers the seat's *oldest* pending placeholder. The slot engine grants one lease per seat
at a time, in ticket order, so questions from two tabs on two processes are answered one at a
time, in the order they were recorded. Capacity is never freed by `disconnect` alone: leases
expire and presence stops being renewed when a process dies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from redis.exceptions import RedisError

from sessions_app import conf, notifications
from sessions_app.chat import answering, frames, messages
from sessions_app.chat.conversations import ConversationNotFound, conversation_get
from sessions_app.consumers import base
from sessions_app.consumers.base import GuardedJsonConsumer
from sessions_app.fanout import Registry, fanout_mode, get_registry, next_version
from sessions_app.gate import selectors, services
from sessions_app.gate.admission import GateUnavailable
from sessions_app.ratelimit import rate_check

logger = logging.getLogger(__name__)

CLIENT_TYPES = ("message", "regenerate", "edit", "typing", "cancel", "heartbeat", "leave")
# Close codes (4000-4999 are the application's): the page does not reconnect after these.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_SESSION_ENDED = 4000
CLOSE_NOT_FOUND = 4404  # `ws/chat/<id>` of a conversation that is not the person's
# Redis unreachable; the page reconnects with backoff (daphne cannot send 1013: base.py).
CLOSE_TRY_AGAIN = base.CLOSE_TRY_AGAIN
UNAVAILABLE_RETRY_SECONDS = 5
HEARTBEAT_MIN_INTERVAL = 1.0
# A `typing` frame passes to the person's other pages when the state changes, and a repeat of
# the same state at most this often (pages repeat `true` every few seconds while typing).
TYPING_REPEAT_SECONDS = 2.0

db = database_sync_to_async


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
    quiet_frames = frozenset({"typing"})
    text_caps = {"message": {"content": "MAX_MESSAGE_CHARS"}}

    # Per-socket state, as class defaults until a socket changes it (base.py says why: P4).
    registry: Registry | None = None
    worker: asyncio.Task[None] | None = None
    runs_wanted = 0
    typing: tuple[bool, float] = (False, -TYPING_REPEAT_SECONDS)
    last_heartbeat = 0.0
    # `ws/chat/<conversation_id>` (the earlier service's form) opens that conversation: a
    # `message` without `conversation_id` goes to it. Another person's id is NOT_FOUND.
    conversation_id: str | None = None

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
        if self.registry is not None:
            self.registry.discard(self)
        if self.worker is not None:
            self.worker.cancel()  # the slot is released (shielded) as the worker unwinds

    async def connect(self) -> None:
        user = self.scope.get("user")
        if (refused := self.scope.get("auth_error")) is not None:
            # A program's bad token (consumers/token_auth.py): say why, then close.
            await self.accept()
            await self._error(refused["code"], refused["message"])
            await self.close(code=refused["close"])
            return
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)  # before accept: the handshake fails
            return
        self.user = user
        conversation_id = self.scope.get("url_route", {}).get("kwargs", {}).get("conversation_id")
        if conversation_id is not None:
            self.conversation_id = conversation_id
            if not await self._owns_conversation():
                return
        try:
            outcome = await db(services.session_open)(user=user, via="page")
        except GateUnavailable:
            await self.accept()
            await self._unavailable()
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        self.session_id = outcome.session_id
        await self.accept()
        try:
            await self._joined(outcome)
        except (GateUnavailable, RedisError, OSError):
            # Redis went away between the open and here (issue 11: a page connecting as Redis
            # restarted got 1011): the documented UNAVAILABLE and 4013, and the page retries.
            logger.warning("Redis lost while connecting %s", self.session_id, exc_info=True)
            await self.close_unavailable()

    async def _joined(self, outcome: services.OpenOutcome) -> None:
        """After accept: the groups, the first status, presence, and any unanswered question."""
        await self.channel_layer.group_add(
            notifications.session_group(self.session_id), self.channel_name
        )
        await self.channel_layer.group_add(
            notifications.user_group(self.user.pk), self.channel_name
        )
        await self._presence_event("user_joined")
        if fanout_mode() == "plain":
            await self.channel_layer.group_add(notifications.QUEUE_GROUP, self.channel_name)
        else:
            self.registry = get_registry()
            self.registry.add(self)
        await self._send_status()
        await self._touch("presence")
        if outcome.state == "active" and await db(messages.answers_pending)(
            seat_id=self.session_id
        ):
            self._kick()  # a question left unanswered by a closed tab

    async def disconnect(self, code: int) -> None:
        if not self.session_id:
            return
        self._forget()
        try:
            await self._presence_event("user_left")
            await self.channel_layer.group_discard(
                notifications.session_group(self.session_id), self.channel_name
            )
            await self.channel_layer.group_discard(
                notifications.user_group(self.user.pk), self.channel_name
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
        client_id = content.get("client_id")
        text = await self._question_text(content, client_id)
        if text is None or not await self._rate_ok(client_id):
            return
        conversation_id = content.get("conversation_id", self.conversation_id)
        await self._ask(
            client_id,
            messages.message_ask,
            content=text,
            conversation_id=conversation_id,
            parent_id=content.get("parent_id"),
        )

    async def on_regenerate(self, content: dict[str, Any]) -> None:
        if not _is_id(message_id := content.get("message_id")):
            await self._error("BAD_REQUEST", "`message_id` must be a number.")
            return
        if not await self._rate_ok(None):
            return
        await self._ask(None, messages.message_regenerate, message_id=message_id)

    async def on_edit(self, content: dict[str, Any]) -> None:
        client_id = content.get("client_id")
        if not _is_id(message_id := content.get("message_id")):
            await self._error("BAD_REQUEST", "`message_id` must be a number.", client_id=client_id)
            return
        text = await self._question_text(content, client_id)
        if text is None or not await self._rate_ok(client_id):
            return
        await self._ask(client_id, messages.message_edit, message_id=message_id, content=text)

    async def _question_text(self, content: dict[str, Any], client_id: Any) -> str | None:
        text = content.get("content")
        if not isinstance(text, str) or not text.strip() or "\x00" in text:
            await self._error(
                "BAD_REQUEST", "A message needs some text in `content`.", client_id=client_id
            )
            return None
        limit = int(conf.get("MAX_MESSAGE_CHARS"))
        if len(text) > limit:
            await self._error(
                "TOO_LARGE", f"At most {limit} characters a message.", client_id=client_id
            )
            return None
        return text

    async def _rate_ok(self, client_id: Any) -> bool:
        limit = int(conf.get("CHAT_RATE_PER_MINUTE"))
        decision = await db(rate_check)(scope="chat", ident=str(self.user.pk), limit=limit)
        if not decision.allowed:
            await self._error(
                "RATE_LIMIT",
                f"At most {limit} messages a minute; try again shortly.",
                retry_after=decision.retry_after,
                client_id=client_id,
            )
        return decision.allowed

    async def _ask(self, client_id: Any, use_case: Any, **kwargs: Any) -> None:
        """Records a question (ask, edit) or a new answer placeholder (regenerate), tells every
        page of the person, and starts answering."""
        try:
            asked = await db(use_case)(owner=self.user, seat_id=self.session_id, **kwargs)
        except services.NotActive:
            await self._error(
                "NOT_ACTIVE", "You can chat once it is your turn.", client_id=client_id
            )
            return
        except (ConversationNotFound, messages.MessageNotFound):
            await self._error(
                "NOT_FOUND", "That conversation or message is not there.", client_id=client_id
            )
            return
        except messages.WrongMessage as exc:
            await self._error("BAD_REQUEST", str(exc), client_id=client_id)
            return
        if use_case is not messages.message_regenerate:
            await self._to_person(
                frames.question_frame(
                    asked, client_id=client_id, owner_name=self.user.get_username()
                )
            )
        self._kick()

    async def on_typing(self, content: dict[str, Any]) -> None:
        """Shown on the person's other pages and programs (not this one), throttled. Typing is
        not "chat activity" for the idle timeout (only sent messages are)."""
        is_typing = content.get("is_typing")
        if not isinstance(is_typing, bool):
            await self._error("BAD_REQUEST", "`is_typing` must be true or false.")
            return
        now = time.monotonic()
        if is_typing == self.typing[0] and now - self.typing[1] < TYPING_REPEAT_SECONDS:
            return
        self.typing = (is_typing, now)
        conversation_id = content.get("conversation_id")
        if not isinstance(conversation_id, str) or len(conversation_id) > 64:
            conversation_id = self.conversation_id
        await self._to_person(
            {
                "type": "typing",
                "is_typing": is_typing,
                "conversation_id": conversation_id,
                "sender_type": "user",
                "sender_id": self.user.get_username(),
            },
            exclude_self=True,
        )

    async def on_cancel(self, content: dict[str, Any]) -> None:
        message_id = content.get("message_id")
        if not _is_id(message_id):
            await self._error("BAD_REQUEST", "`message_id` must be a number.")
            return
        try:
            outcome = await db(messages.message_cancel)(owner=self.user, message_id=message_id)
        except messages.MessageNotFound:
            await self._error("NOT_FOUND", "That message is not there.", message_id=message_id)
            return
        # Not started: it will never be answered; every page closes its placeholder.
        for answer_id in outcome.not_started:
            await self._to_person(
                {
                    "type": "stream_end",
                    "message_id": answer_id,
                    "conversation_id": outcome.conversation_id,
                    "tokens_used": 0,
                    "latency_ms": 0,
                    "status": "cancelled",
                }
            )
        if outcome.streaming:
            # Streaming: whichever process writes it stops (it sends the stream_end itself).
            await self.channel_layer.group_send(
                notifications.user_group(self.user.pk),
                {"type": "chat.cancel", "message_ids": outcome.streaming},
            )

    async def on_heartbeat(self, content: dict[str, Any]) -> None:
        """Presence, and an absolute status back; `keep: true` ("still here") is activity.

        Each costs a script and a few reads, so a socket gets at most one a second answered
        (pages send one every 15 s; anything faster is a flood, dropped silently)."""
        now = time.monotonic()
        if now - self.last_heartbeat < HEARTBEAT_MIN_INTERVAL:
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
        if event.get("exclude") == self.channel_name:
            return  # this socket's own typing or presence: shown to the others only
        await self.send_frame(frames.with_protocol_fields(event["frame"]))

    async def chat_cancel(self, event: dict[str, Any]) -> None:
        answering.stop([int(i) for i in event.get("message_ids", [])])

    # --- answering --------------------------------------------------------------------------

    def _kick(self) -> None:
        self.runs_wanted += 1
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        while self.runs_wanted > 0:
            self.runs_wanted -= 1
            try:
                await answering.answer_pending(seat_id=self.session_id, sink=self)
            except services.NotActive:
                await self._error("NOT_ACTIVE", "Your session is not active.")
            except GateUnavailable:
                await self._unavailable()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("answering failed in session %s", self.session_id)

    async def emit(self, frame: dict[str, Any]) -> None:
        """The answering loop's sink (chat/answering.py): every page of the person."""
        await self._to_person(frame)

    # --- helpers ----------------------------------------------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Sends one frame; a socket that closed meanwhile is not an error."""
        try:
            await self.send_json(frame)
        except Exception:
            logger.debug("send to a closed socket dropped", exc_info=True)

    async def _to_person(self, frame: dict[str, Any], *, exclude_self: bool = False) -> None:
        """Chat frames go to every page of the person (all tabs, all processes)."""
        event: dict[str, Any] = {"type": "chat.frame", "frame": frame}
        if exclude_self:
            event["exclude"] = self.channel_name
        await self.channel_layer.group_send(notifications.user_group(self.user.pk), event)

    async def _presence_event(self, event: str) -> None:
        """`system` user_joined / user_left: another page or program of the person came or went."""
        await self._to_person(
            {
                "type": "system",
                "event": event,
                "user_id": self.user.get_username(),
                "via": "token" if self.scope.get("api_token") else "page",
            },
            exclude_self=True,
        )

    async def _owns_conversation(self) -> bool:
        try:
            await db(conversation_get)(owner=self.user, conversation_id=self.conversation_id)
        except ConversationNotFound:
            await self.accept()
            await self._error("NOT_FOUND", "There is no such conversation.")
            await self.close(code=CLOSE_NOT_FOUND)
            return False
        return True

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

    async def _error(
        self,
        code: str,
        message: str = "",
        *,
        retry_after: int | None = None,
        client_id: Any = None,
        message_id: Any = None,
    ) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message or code}
        if retry_after is not None:
            frame["retry_after"] = retry_after
        if client_id is not None:
            frame["client_id"] = client_id
        if message_id is not None:
            frame["message_id"] = message_id
        await self.send_frame(frame)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
