"""Issue 8 item 8: no question or answer stays `pending`/`streaming` for good. The answering
loop records every answer it marked, even when cancelled right as it marks it; the sweep ends
answers whose seat is gone or whose seat has nobody answering (no live lease, no place in the
slot line), and leaves alone every answer someone is still writing or waiting to write."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.core.management import call_command

from sessions_app.chat import answering, messages
from sessions_app.chat.sweep import messages_sweep
from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatMessage

pytestmark = pytest.mark.django_db(transaction=True)


def asked(name: str) -> tuple[str, Any]:
    user = User.objects.create_user(name)
    seat = services.session_open(user=user).session_id
    return seat, messages.message_ask(owner=user, seat_id=seat, content="q")


def age(*answers: Any, seconds: float = 3600) -> None:
    ChatMessage.objects.filter(pk__in=[a.pk for a in answers]).update(
        created_at=ChatMessage.objects.get(pk=answers[0].pk).created_at - timedelta(seconds=seconds)
    )


def status(message: Any) -> str:
    return ChatMessage.objects.get(pk=message.pk).status


def test_answers_of_a_closed_seat_are_ended_with_their_questions():
    seat, a = asked("alice")
    services.session_close(session_id=seat, reason="user")
    age(a.answer)
    assert messages_sweep() == 1
    assert (status(a.answer), status(a.question)) == ("failed", "failed")
    assert messages_sweep() == 0  # nothing left to end


def test_a_dead_streamer_is_ended_but_a_live_one_is_not():
    _, dead = asked("dead")
    live_seat, live = asked("live")
    waiting_seat, waiting = asked("waiting")
    for a in (dead, live, waiting):
        assert messages.answer_begin(answer_id=a.answer.pk) or a is waiting
    manager = get_manager()
    # `live` holds its seat's lease, `waiting` waits in the slot line; `dead`'s process is gone.
    assert manager.acquire_slot(live_seat, waiter_id=f"{live_seat}:1").outcome == "granted"
    manager.set_limits({"max_concurrent_queries": 1})
    assert manager.acquire_slot(waiting_seat, waiter_id=f"{waiting_seat}:1").outcome == "wait"
    ChatMessage.objects.filter(pk=waiting.answer.pk).update(status="pending")
    age(dead.answer, live.answer, waiting.answer)
    assert messages_sweep() == 1
    assert status(dead.answer) == "failed" and status(dead.question) == "failed"
    assert status(live.answer) == "streaming" and status(waiting.answer) == "pending"


def test_young_answers_are_left_alone():
    seat, a = asked("alice")
    services.session_close(session_id=seat, reason="user")
    assert messages_sweep() == 0  # younger than a lease TTL: its writer may still record it
    assert status(a.answer) == "pending"


def test_the_sweep_command_ends_orphans_and_says_so(capsys):
    seat, a = asked("alice")
    services.session_close(session_id=seat, reason="admin")
    age(a.answer)
    call_command("sweep_sessions")
    assert "orphaned answers ended 1" in capsys.readouterr().out
    assert status(a.answer) == "failed"


class Sink:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def emit(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)


async def test_cancelled_right_as_the_answer_is_marked_it_is_still_recorded(monkeypatch):
    """The window issue 8 measured: cancelled between "marked streaming" and the try/finally."""
    seat, a = await database_sync_to_async(asked)("alice")
    loop = asyncio.get_running_loop()
    task: asyncio.Task[None] | None = None
    original = messages.answer_begin
    marked = threading.Event()

    def begin_then_cancel(*, answer_id: int) -> bool:
        result = original(answer_id=answer_id)
        marked.set()
        assert task is not None
        loop.call_soon_threadsafe(task.cancel)  # the page closed at this very moment
        return result

    monkeypatch.setattr(messages, "answer_begin", begin_then_cancel)
    sink = Sink()
    task = asyncio.create_task(answering.answer_one(seat_id=seat, sink=sink, waiting_for=a.answer))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert marked.is_set()
    row = await database_sync_to_async(ChatMessage.objects.get)(pk=a.answer.pk)
    assert row.status == "cancelled"
    assert get_manager().counts()["in_flight"] == 0
