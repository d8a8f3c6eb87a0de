"""What every socket endpoint does before and after its own code: budgets, parsing, safe sends.

`GuardedJsonConsumer` is the base of the chat and console consumers (issue 8):

* **Budgets.** daphne hands every client frame to an unbounded asyncio queue that only this
  consumer drains, one frame at a time; a consumer slower than the flood lets that queue grow
  without bound (600,000 frames in 10 s grew a process by 170 MB). So every frame first passes
  a per-socket token bucket, and then one per frame type, both in memory (microseconds, so the
  queue never outgrows the bucket). A frame over budget is dropped with one `RATE_LIMIT` error
  (at most one a second); after `FLOOD_STRIKES` dropped frames the socket is closed with 1008
  and every frame still queued behind it is dropped unread until daphne's disconnect arrives.
* **Parsing.** Oversized, non-JSON, too deeply nested, lone-surrogate (`"\\ud800"`, which no
  database can store), out-of-range integers and non-finite numbers are `BAD_REQUEST` /
  `TOO_LARGE` error frames; the socket stays open.
* **Sending.** JSON is written with `ensure_ascii=False` (Hangul is 3 bytes, not 6), and a
  frame over `MAX_SEND_BYTES` (daphne's `--websocket-max-message-size` caps sends too) is
  never handed to daphne, where it would be dropped with an exception: it is logged as an
  error and replaced by a `TOO_LARGE` error frame naming what could not be sent.
* **Redis loss.** If the channel layer cannot be read (Redis unreachable), the page gets an
  `UNAVAILABLE` frame and the socket closes with 1013 ("try again later"), never 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.sessions import InstanceSessionWrapper
from channels.utils import await_many_dispatch
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

from sessions_app import conf

logger = logging.getLogger(__name__)

# daphne (autobahn) lets a server close only with 1000 or 3000-4999: sending 1008 or 1013
# raises inside the consumer and the page sees 1011. So the application's own codes, named
# after the HTTP status and the WebSocket code they stand for; the page reconnects after both
# with backoff (a flooder pays a new handshake, Origin and login checks, each time).
CLOSE_FLOOD = 4429
CLOSE_TRY_AGAIN = 4013  # Redis unreachable ("try again later")
UNAVAILABLE_RETRY_SECONDS = 5
# daphne's reactor can read thousands of frames between two turns of this consumer (one frame a
# turn): a backlog this deep is a flood whatever the budgets say, and is dropped at once.
MAX_QUEUED_FRAMES = 200
FLOOD_STRIKES = 20
FLOOD_CLOSE_DELAY_SECONDS = 0.25  # frames dropped over budget before the socket is closed
STRIKE_DECAY_PER_SECOND = 1.0
# JSON integers beyond 64 bits name nothing we store (SQLite raised OverflowError on them).
INT_LIMIT = 2**63 - 1


@dataclass(slots=True)
class Bucket:
    """A token bucket: `burst` frames at once, refilled at `rate` frames a second."""

    burst: float
    rate: float
    tokens: float = field(default=-1.0)
    stamp: float = field(default=0.0)

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class FrameRefused(Exception):
    """A frame the consumer will not act on; `code` and `message` go back in an error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _bounded_int(text: str) -> int:
    # Python refuses integer strings over 4,300 digits itself (ValueError); this keeps the
    # rest within what a database column can hold.
    value = int(text)
    if not -INT_LIMIT <= value <= INT_LIMIT:
        raise ValueError("integer out of range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def parse_frame(text: str) -> Any:
    """The frame's JSON value, or FrameRefused with the reason."""
    try:
        content = json.loads(
            text,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_refuse_constant,
        )
    except RecursionError:
        raise FrameRefused("BAD_REQUEST", _("Frames may not be nested that deeply.")) from None
    except ValueError:
        raise FrameRefused("BAD_REQUEST", _("Frames must be JSON.")) from None
    # A text frame is valid UTF-8 (daphne checks), so a lone surrogate can only arrive as a
    # `\ud800` escape; it would fail later, in the database or on the way out (a 1011).
    if "\\u" in text:
        try:
            json.dumps(content, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise FrameRefused(
                "BAD_REQUEST", _("Frames may not contain unpaired surrogate characters.")
            ) from None
    return content


def scope_language(scope: dict[str, Any]) -> str:
    """The page's language, chosen as LocaleMiddleware chose it for the HTTP page."""
    from django.utils.translation.trans_real import parse_accept_lang_header

    candidates = [scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME, "")]
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    candidates += [code for code, _q in parse_accept_lang_header(accept) if code != "*"]
    for code in candidates:
        if not code:
            continue
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


class GuardedJsonConsumer(AsyncJsonWebsocketConsumer):
    """Base class of every socket endpoint. Subclasses set the budgets and implement
    `receive_json` (called only with frames that passed every check)."""

    # All frames of one socket together, checked before parsing: (burst, frames a second).
    socket_budget: ClassVar[tuple[float, float]] = (60.0, 20.0)
    # Per frame type (the `type` field); other and malformed frames share `other_budget`.
    frame_budgets: ClassVar[dict[str, tuple[float, float]]] = {}
    other_budget: ClassVar[tuple[float, float]] = (10.0, 1.0)
    # Advisory frame types (typing): over budget they are dropped without an error frame, since
    # a page told to "slow down" on a hint would hold back the person's next question; they
    # still count as strikes, so a flood of them is closed like any other.
    quiet_frames: ClassVar[frozenset[str]] = frozenset()
    # Text fields with a length cap in characters: {frame type: {field: conf knob}}.
    text_caps: ClassVar[dict[str, dict[str, str]]] = {}

    # Per-socket state starts as these class defaults and becomes the socket's own only once it
    # changes (P4, issue 11): a waiting page that never sends a frame holds none of it, which
    # matters at 10,000 waiting pages a process. The buckets appear with the first frame.
    _buckets: dict[str, Bucket] | None = None
    _strikes = 0.0
    _strike_stamp = 0.0  # with no strikes yet its value does not matter (decay stops at 0)
    _last_rate_error = -math.inf
    _refusing = False  # closed for a flood: frames still queued are dropped unread
    _unavailable_sent = False
    _accepted = False

    # --- lifecycle --------------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' own `__call__`, except that a channel layer that cannot be read (Redis
        down) ends the socket with UNAVAILABLE and 1013 instead of an exception (1011)."""
        self.scope = scope
        # Error frames speak the page's language; tasks started from here inherit it.
        translation.activate(scope_language(scope))
        # daphne's receive is its per-socket queue's `get`: its depth is the backlog of frames
        # this consumer has not read yet (None under servers that hide it).
        inbox = getattr(receive, "__self__", None)
        self._inbox = inbox if isinstance(inbox, asyncio.Queue) else None
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self._guarded_channel_receive)
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch(sources, self.dispatch)

    async def _guarded_channel_receive(self) -> Any:
        while True:
            try:
                return await self.channel_receive()
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self._accepted:
                    # Still connecting: `connect` meets the same outage and answers it itself
                    # (a frame sent now would race its handshake). Try again shortly.
                    await asyncio.sleep(1.0)
                    continue
                logger.warning("channel layer unreadable for %s", self.channel_name, exc_info=True)
                await self.close_unavailable()
                # The disconnect that follows ends the consumer; until then, try again slowly.
                await asyncio.sleep(UNAVAILABLE_RETRY_SECONDS)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol=subprotocol, headers=headers)
        self._accepted = True

    async def close_unavailable(self) -> None:
        """Tells the page Redis is unreachable (once), then closes with 1013."""
        if self._unavailable_sent:
            return
        self._unavailable_sent = True
        await self.send_error(
            "UNAVAILABLE",
            _("The service is briefly unavailable; retrying."),
            retry_after=UNAVAILABLE_RETRY_SECONDS,
        )
        try:
            await self.close(code=CLOSE_TRY_AGAIN)
        except Exception:
            logger.debug("close after UNAVAILABLE failed", exc_info=True)

    # --- frames from the page ---------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections (a thread hop) before every message,
        # which made a flood of frames wait on the thread pool, slower than daphne queues
        # them. Client frames skip it: every database call here goes through
        # database_sync_to_async, which closes stale connections in its own thread anyway.
        if message.get("type") == "websocket.receive":
            await self.websocket_receive(message)
            return
        await super().dispatch(message)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self._refusing:
            self._drain()
            return
        if self._inbox is not None and self._inbox.qsize() > MAX_QUEUED_FRAMES:
            await self._close_flooding("backlog")
            return
        now = time.monotonic()
        if not self._take("*socket*", self.socket_budget, now):
            await self._over_budget(now)
            return
        text = message.get("text")
        try:
            if text is None:
                raise FrameRefused("BAD_REQUEST", _("Frames must be JSON text."))
            if len(text) * 4 > int(conf.get("MAX_MESSAGE_BYTES")) and len(
                text.encode("utf-8")
            ) > int(conf.get("MAX_MESSAGE_BYTES")):
                raise FrameRefused("TOO_LARGE", _("That message is too large."))
            content = parse_frame(text)
        except FrameRefused as refused:
            if not self._take("*other*", self.other_budget, now):
                await self._over_budget(now)
                return
            await self.send_error(refused.code, refused.message)
            return
        kind = content.get("type") if isinstance(content, dict) else None
        budget = self.frame_budgets.get(kind) if isinstance(kind, str) else None
        key = kind if budget is not None else "*other*"
        if not self._take(str(key), budget or self.other_budget, now):
            await self._over_budget(
                now,
                frame_type=str(key) if budget is not None else None,
                client_id=content.get("client_id") if isinstance(content, dict) else None,
            )
            return
        for name, knob in self.text_caps.get(str(kind), {}).items():
            value = content.get(name)
            cap = int(conf.get(knob))
            if isinstance(value, str) and len(value) > cap:
                await self.send_error(
                    "TOO_LARGE",
                    _("That message is too long: at most %(cap)s characters.") % {"cap": cap},
                    # The page shows a message when its echo arrives: this names the one
                    # that will never be echoed.
                    extra={"client_id": content.get("client_id"), "max_chars": cap},
                )
                return
        await self.receive_json(content)

    def _take(self, key: str, budget: tuple[float, float], now: float) -> bool:
        if self._buckets is None:
            self._buckets = {}
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(*budget)
        return bucket.take(now)

    async def _over_budget(
        self, now: float, *, frame_type: str | None = None, client_id: Any = None
    ) -> None:
        self._strikes = max(
            0.0, self._strikes - (now - self._strike_stamp) * STRIKE_DECAY_PER_SECOND
        )
        self._strike_stamp = now
        self._strikes += 1
        if self._strikes >= FLOOD_STRIKES:
            await self._close_flooding("budget")
            return
        if frame_type in self.quiet_frames:
            return
        if now - self._last_rate_error >= 1.0:
            self._last_rate_error = now
            # Names what was refused, so a page holds back only that (its question, by client
            # id), not everything after an unrelated frame went over its budget.
            extra: dict[str, Any] = {}
            if frame_type is not None:
                extra["frame_type"] = frame_type
            if isinstance(client_id, str | int) and not isinstance(client_id, bool):
                extra["client_id"] = client_id
            await self.send_error(
                "RATE_LIMIT", _("Too many frames; slow down."), retry_after=1, extra=extra
            )

    async def _close_flooding(self, why: str) -> None:
        self._refusing = True
        self._drain()
        logger.warning(
            "closing a flooding socket (%s, %s, user %s)",
            why,
            self.scope.get("path"),
            getattr(self.scope.get("user"), "pk", None),
        )
        await self.on_flood()
        await self.send_error(
            "RATE_LIMIT", _("Too many frames; this connection is closed."), retry_after=5
        )
        # Closed a moment later: autobahn drops a connection that keeps sending after our close
        # frame, discarding what it had not written yet, and the error would be lost with it.
        # Meanwhile every frame that arrives is dropped unread (`_refusing`).
        self._closer = asyncio.create_task(self._close_soon())

    async def _close_soon(self) -> None:
        await asyncio.sleep(FLOOD_CLOSE_DELAY_SECONDS)
        try:
            await self.close(code=CLOSE_FLOOD)
        except Exception:
            logger.debug("close of a flooding socket failed", exc_info=True)

    def _drain(self) -> None:
        """Drops every client frame daphne has queued for this socket, at once (memory)."""
        if self._inbox is None:
            return
        keep = []
        while True:
            try:
                item = self._inbox.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item.get("type") != "websocket.receive":
                keep.append(item)  # the disconnect must still reach the consumer
        for item in keep:
            self._inbox.put_nowait(item)

    async def on_flood(self) -> None:
        """Hook: the socket is about to be closed for flooding (nothing by default)."""

    # --- frames to the page -----------------------------------------------------------------

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, ensure_ascii=False)

    async def send_json(self, content: Any, close: bool = False) -> None:
        """Sends one JSON frame, or, if it is over the send cap, an error frame saying so."""
        text = await self.encode_json(content)
        cap = int(conf.get("MAX_SEND_BYTES"))
        size = len(text.encode("utf-8"))
        if size > cap:
            kind = content.get("type") if isinstance(content, dict) else None
            logger.error(
                "refused to send a %s frame of %d bytes (cap %d) on %s",
                kind,
                size,
                cap,
                self.scope.get("path"),
            )
            frame: dict[str, Any] = {
                "type": "error",
                "code": "TOO_LARGE",
                "message": _("Something was too large to show here; reload the page."),
                "refused_type": kind,
            }
            if isinstance(content, dict) and "message_id" in content:
                frame["message_id"] = content["message_id"]
            text = json.dumps(frame, ensure_ascii=False)
        await self.send(text_data=text, close=close)

    async def send_encoded(self, text: str) -> None:
        """Sends JSON text the caller encoded itself and keeps far below MAX_SEND_BYTES (the
        fan-out's `queue.status`, about 200 bytes), straight to the server's `send`.

        It skips what `send_json` adds per frame (an encode, the cap check) and Channels'
        session wrapper, which acts only on `http.response.start` but read the session's state
        through a LazyObject on every frame: together about a sixth of a fan-out round's CPU
        (issue 11, py-spy). A socket already gone is no error."""
        send = self.base_send
        wrapper = getattr(send, "__self__", None)
        if isinstance(wrapper, InstanceSessionWrapper):
            send = wrapper.real_send
        try:
            await send({"type": "websocket.send", "text": text})
        except Exception:
            logger.debug("send to a closed socket dropped", exc_info=True)

    async def send_error(
        self,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """An `error {code, message, retry_after?}` frame; a socket already gone is no error."""
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        frame.update(extra or {})
        if retry_after is not None:
            frame["retry_after"] = retry_after
        try:
            await self.send_json(frame)
        except Exception:
            logger.debug("error frame to a closed socket dropped", exc_info=True)


class RefuseConsumer(GuardedJsonConsumer):
    """Any `/ws/` path nobody serves: refused before accept (HTTP 403), never an HTTP 500."""

    async def connect(self) -> None:
        await self.close(code=4404)
