"""Answers asked over HTTP (`POST .../messages`, `.../messages/stream`), run in the asking
request's process: the person may have no page open, so no socket worker would ever answer.

One background task per seat per process runs the same answering loop the socket runs
(answering.answer_pending) with a sink that fans every frame out to the person's group, so
every page and every SSE stream of the person, on any process, sees the answer exactly as if it
had been asked on the page. Order holds whoever answers: a page's socket worker elsewhere may
compete for the seat, but the seat gets one slot lease at a time and its holder answers the
oldest pending placeholder.

While it runs, the task also listens on the person's group for `chat.cancel` (Stop pressed on a
page served by another process), exactly as a page's consumer does. If the process dies, the
placeholder stays pending until the next answerer of the seat or the message sweep ends it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer

from sessions_app import notifications
from sessions_app.chat import answering
from sessions_app.gate.admission import GateUnavailable
from sessions_app.gate.services import NotActive

logger = logging.getLogger(__name__)


class GroupSink:
    """The answering loop's sink for HTTP-asked answers: every page and stream of the person."""

    def __init__(self, user_pk: Any) -> None:
        self.group = notifications.user_group(user_pk)

    async def emit(self, frame: dict[str, Any]) -> None:
        try:
            await get_channel_layer().group_send(self.group, {"type": "chat.frame", "frame": frame})
        except Exception:  # at-most-once like every push; the history has the answer
            logger.debug("chat frame to %s dropped", self.group, exc_info=True)


class _Runner:
    def __init__(self, seat_id: str, user_pk: Any) -> None:
        self.seat_id = seat_id
        self.user_pk = user_pk
        self.wanted = 1
        self.sink = GroupSink(user_pk)
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        layer = get_channel_layer()
        # The default prefix: channels_redis reads one list per prefix and process, one at a
        # time, so a channel of its own prefix would wait behind every consumer's blocking read.
        channel = await layer.new_channel()
        await layer.group_add(self.sink.group, channel)
        listener = asyncio.create_task(self._listen(layer, channel))
        try:
            while self.wanted > 0:
                self.wanted -= 1
                try:
                    await answering.answer_pending(seat_id=self.seat_id, sink=self.sink)
                except NotActive:
                    await self.sink.emit(
                        {"type": "error", "code": "NOT_ACTIVE", "message": "The seat ended."}
                    )
                    return
                except GateUnavailable:
                    logger.warning("gate unavailable while answering seat %s", self.seat_id)
                    return
                except Exception:
                    logger.exception("answering failed in seat %s", self.seat_id)
        finally:
            listener.cancel()
            if _runners.get(self.seat_id) is self:
                del _runners[self.seat_id]
            try:
                await asyncio.shield(layer.group_discard(self.sink.group, channel))
            except Exception:  # the membership expires by itself
                logger.debug("group_discard failed", exc_info=True)

    async def _listen(self, layer: Any, channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            if message.get("type") == "chat.cancel":
                answering.stop([int(i) for i in message.get("message_ids", [])])


_runners: dict[str, _Runner] = {}


def answer_soon(*, seat_id: str, user_pk: Any) -> None:
    """Makes sure this process answers the seat's pending questions (call from the event loop).

    A runner already at work for the seat takes one more round instead of a second task."""
    runner = _runners.get(seat_id)
    if runner is not None and runner.task is not None and not runner.task.done():
        runner.wanted += 1
        return
    runner = _Runner(seat_id, user_pk)
    _runners[seat_id] = runner
    runner.task = asyncio.get_running_loop().create_task(runner.run())


def running(seat_id: str) -> bool:
    runner = _runners.get(seat_id)
    return runner is not None and runner.task is not None and not runner.task.done()
