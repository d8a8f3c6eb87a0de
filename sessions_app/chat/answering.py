"""The answering loop: take the seat's generation slot, answer its oldest pending placeholder,
stream it, and always record how it ended — for any surface, through a small sink.

The socket consumer calls it today; an HTTP/SSE surface can call the same loop with its own
sink. Stopping an answer is process-wide: `stop(answer_ids)` cancels the streams this process
runs (a cancel is broadcast to every process of the person, each stops what it holds).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from channels.db import database_sync_to_async

from sessions_app import conf
from sessions_app.chat import generation, messages
from sessions_app.chat.attachments import with_files
from sessions_app.chat.backends import BackendError, ChatTurn, StreamEnd, get_backend
from sessions_app.chat.selectors import path_turns
from sessions_app.models import ChatMessage

logger = logging.getLogger(__name__)

db = database_sync_to_async

# Answers this process is streaming: answer id → the streaming task (Stop cancels it).
_streams: dict[int, asyncio.Task[None]] = {}


class AnswerSink(Protocol):
    """Where an answer's frames go (every page of the person, an SSE response, ...)."""

    async def emit(self, frame: dict[str, Any]) -> None:
        """Delivers one frame; must not raise when the reader has gone away."""
        raise NotImplementedError("an AnswerSink must provide emit()")


def stop(answer_ids: list[int]) -> int:
    """Stops the listed answers if this process streams them; returns how many it stopped."""
    stopped = 0
    for answer_id in answer_ids:
        task = _streams.get(answer_id)
        if task is not None and not task.done():
            task.cancel()
            stopped += 1
    return stopped


def _turns(answer: Any, limit: int) -> list[ChatTurn]:
    # Each turn carries its attachments' text (and the question's images, when the model
    # reads them): chat/attachments.py.
    rows = path_turns(conversation_id=answer.conversation_id, up_to=answer.parent_id, limit=limit)
    return with_files(rows, question_id=answer.parent_id)


def _end_frame(answer: Any, status: str, tokens: int = 0, latency_ms: int = 0) -> dict[str, Any]:
    return {
        "type": "stream_end",
        "message_id": answer.pk,
        "conversation_id": str(answer.conversation_id),
        "tokens_used": tokens,
        "latency_ms": latency_ms,
        "status": status,
    }


async def answer_pending(*, seat_id: str, sink: AnswerSink) -> None:
    """Answers the seat's pending placeholders one at a time, oldest first, until none is left.

    Raises NotActive when the seat is not active (its placeholders stay pending for the next
    seat's answerer or the sweep), GateUnavailable when Redis cannot be reached."""
    while True:
        peek = await db(messages.answer_next)(seat_id=seat_id)
        if peek is None:
            return
        await answer_one(seat_id=seat_id, sink=sink, waiting_for=peek)


async def answer_one(*, seat_id: str, sink: AnswerSink, waiting_for: Any) -> None:
    """One answer under the slot. `waiting_for` is the placeholder expected to be next (named
    in `waiting_for_capacity` frames and failed if no slot comes free in time)."""

    async def on_wait(place: int) -> None:
        await sink.emit(
            {
                "type": "system",
                "event": "waiting_for_capacity",
                "place": place,
                "message_id": waiting_for.pk,
                "conversation_id": str(waiting_for.conversation_id),
            }
        )

    closing: list[dict[str, Any]] = []
    try:
        try:
            async with generation.generation_slot(session_id=seat_id, on_wait=on_wait):
                answer = await db(messages.answer_next)(seat_id=seat_id)
                if answer is None:
                    return  # answered by another tab's worker, or cancelled meanwhile
                await _generate(answer, sink, closing)
        finally:
            # Only once the slot is released: a page that sees stream_end (after Stop, say)
            # can count on the slot being free.
            for frame in closing:
                await sink.emit(frame)
    except generation.CapacityTimeout:
        if not await db(messages.answer_finish)(
            answer_id=waiting_for.pk, content="", status=ChatMessage.Status.FAILED, started=False
        ):
            return  # another answerer of the seat (page or HTTP runner) took it meanwhile
        await sink.emit(_end_frame(waiting_for, ChatMessage.Status.FAILED))
        await sink.emit(
            {
                "type": "error",
                "code": "CAPACITY_TIMEOUT",
                "message": "Every answer was busy for too long; please ask again.",
                "message_id": waiting_for.pk,
            }
        )
    except generation.SlotLost:
        await sink.emit({"type": "system", "event": "slot_lost", "message_id": waiting_for.pk})


async def _generate(answer: Any, sink: AnswerSink, closing: list[dict[str, Any]]) -> None:
    """Marks `answer` streaming and streams it. Once it is marked, whatever happens (a cancel
    even while the mark is being written), the record ends it (done / cancelled / failed) and
    `closing` gets its stream_end: no row is left "streaming" by a live process."""
    # The mark runs to completion even if this task is cancelled while awaiting it, and the
    # `finally` below waits for it again: a cancel between "marked" and "try" cannot happen.
    begin = asyncio.ensure_future(db(messages.answer_begin)(answer_id=answer.pk))
    loop = asyncio.get_running_loop()
    started = loop.time()
    parts: list[str] = []
    end = StreamEnd()
    status = ChatMessage.Status.FAILED  # until proven otherwise: a crash below still ends it
    failure: str | None = None
    backend = get_backend()
    conversation_id = str(answer.conversation_id)
    try:
        if not await asyncio.shield(begin):
            return  # cancelled before it started (Stop, or the sweep ended it)
        turns = await db(_turns)(answer, int(conf.get("OPENAI_HISTORY_MESSAGES")))
        await sink.emit(
            {
                "type": "stream_start",
                "message_id": answer.pk,
                "conversation_id": conversation_id,
                "parent_id": answer.parent_id,
            }
        )

        async def stream() -> None:
            index = 0
            async for piece in backend.stream(turns, end):
                parts.append(piece)
                await sink.emit(
                    {
                        "type": "stream_chunk",
                        "message_id": answer.pk,
                        "conversation_id": conversation_id,
                        "content": piece,
                        "index": index,
                    }
                )
                index += 1

        task = asyncio.create_task(stream())
        _streams[answer.pk] = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()  # the socket went away, the seat ended, or the slot was lost
            status = ChatMessage.Status.CANCELLED
            raise
        if task.cancelled():
            status = ChatMessage.Status.CANCELLED
        elif (exc := task.exception()) is not None:
            failure = str(exc) if isinstance(exc, BackendError) else "The answer failed."
            if not isinstance(exc, BackendError):
                logger.error("backend crashed", exc_info=exc)
        else:
            status = ChatMessage.Status.DONE
    except asyncio.CancelledError:
        status = ChatMessage.Status.CANCELLED
        raise
    finally:
        _streams.pop(answer.pk, None)
        try:
            if await asyncio.shield(begin):
                latency_ms = int((loop.time() - started) * 1000)
                await _record_end(answer, "".join(parts), status, end.tokens, latency_ms)
                closing.append(_end_frame(answer, status, end.tokens, latency_ms))
                if status == ChatMessage.Status.FAILED:
                    closing.append(
                        {
                            "type": "error",
                            "code": "BACKEND_ERROR",
                            "message": failure or "The answer failed.",
                            "message_id": answer.pk,
                        }
                    )
        finally:
            try:
                await backend.aclose()
            except Exception:
                logger.debug("backend close failed", exc_info=True)


async def _record_end(answer: Any, content: str, status: str, tokens: int, latency_ms: int) -> None:
    """Shielded: a cancelled generation still records how it ended (never left "streaming")."""
    await asyncio.shield(
        asyncio.ensure_future(
            db(messages.answer_finish)(
                answer_id=answer.pk,
                content=content,
                status=status,
                tokens_used=tokens,
                latency_ms=latency_ms,
            )
        )
    )
