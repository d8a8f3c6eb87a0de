"""Use-cases: the Redis transition, the SQL record beside it, notices after commit, and the one
clear failure when Redis cannot be asked."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ValidationError
from django.core.management import call_command

from sessions_app import notifications
from sessions_app.chat import generation
from sessions_app.gate import admission, services
from sessions_app.gate.admission import GateUnavailable, get_manager
from sessions_app.models import AuditEvent, ChatSession, GateSettings

pytestmark = pytest.mark.django_db


def make_users(n: int, prefix: str = "user") -> list[User]:
    return [User.objects.create_user(f"{prefix}{i}", password="x") for i in range(n)]


def set_limit(n: int) -> None:
    get_manager().set_limits({"max_active_sessions": n})


def test_open_records_the_session_and_reopening_returns_it():
    (alice,) = make_users(1)
    first = services.session_open(user=alice)
    again = services.session_open(user=alice)
    assert again.session_id == first.session_id and again.created is False
    row = ChatSession.objects.get()
    assert str(row.id) == first.session_id
    assert (row.state, row.lane, row.opened_via) == ("active", "normal", "page")
    assert row.ticket >= 1 and row.activated_at is not None


def test_priority_permission_puts_a_person_in_the_priority_lane():
    set_limit(1)
    normal = make_users(3)
    vip = User.objects.create_user("vip", password="x")
    vip.user_permissions.add(Permission.objects.get(codename="priority"))
    for user in normal:
        services.session_open(user=user)
    opened = services.session_open(user=vip)
    assert opened.position == 1
    assert ChatSession.objects.get(user=vip).lane == "priority"


def test_superusers_are_not_put_in_the_priority_lane_by_default():
    boss = User.objects.create_superuser("boss", password="x")
    assert services.lane_for(boss) == "normal"


def test_close_records_the_reason_and_the_promotion(django_capture_on_commit_callbacks):
    set_limit(1)
    first, second = make_users(2)
    a = services.session_open(user=first)
    b = services.session_open(user=second)
    assert b.state == "queued"
    with django_capture_on_commit_callbacks(execute=True):
        result = services.session_close(session_id=a.session_id, reason="user")
    assert result.promoted == [b.session_id]
    closed = ChatSession.objects.get(id=a.session_id)
    assert (closed.state, closed.close_reason) == ("closed", "user")
    assert closed.closed_at is not None
    promoted = ChatSession.objects.get(id=b.session_id)
    assert promoted.state == "active" and promoted.activated_at is not None


def test_staff_close_is_audited_with_the_note():
    (person,) = make_users(1)
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    opened = services.session_open(user=person)
    services.session_close(
        session_id=opened.session_id, reason="admin", actor=staff, note="maintenance"
    )
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target) == (staff, "session.close", opened.session_id)
    assert event.detail["note"] == "maintenance"
    assert ChatSession.objects.get(id=opened.session_id).close_note == "maintenance"


def test_the_person_is_told_after_commit_when_closed(django_capture_on_commit_callbacks):
    (person,) = make_users(1)
    opened = services.session_open(user=person)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(notifications.session_group(opened.session_id), channel)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.session_close(session_id=opened.session_id, reason="user")
    assert callbacks, "the notice waits for the commit"
    for callback in callbacks:
        callback()

    async def receive() -> dict:
        return await asyncio.wait_for(layer.receive(channel), timeout=2)

    message = async_to_sync(receive)()
    assert message["type"] == "session.closed" and message["reason"] == "user"


def test_sweep_records_expiries_and_promotions():
    set_limit(1)
    first, second = make_users(2)
    a = services.session_open(user=first, via="api")
    b = services.session_open(user=second, via="api")
    manager = get_manager()
    # An hour without activity (the clock is Redis's, so we move the activity back instead).
    manager.client.zadd(manager.keys.active, {a.session_id: manager.server_time() - 3600})
    manager.client.zadd(manager.keys.seen, {b.session_id: manager.server_time()})
    result = services.sessions_sweep()
    assert result.expired == [a.session_id] and result.promoted == [b.session_id]
    assert ChatSession.objects.get(id=a.session_id).close_reason == "expired"
    assert ChatSession.objects.get(id=b.session_id).state == "active"


def test_raising_the_limit_promotes_and_records_it(django_capture_on_commit_callbacks):
    set_limit(1)
    users = make_users(3)
    opened = [services.session_open(user=u) for u in users]
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        services.limits_set(actor=staff, max_active_sessions=3)
    assert get_manager().counts()["active"] == 3
    assert set(ChatSession.objects.values_list("state", flat=True)) == {"active"}
    assert AuditEvent.objects.get(action="limits.set").detail["after"] == {"max_active_sessions": 3}
    assert all(o.session_id for o in opened)


@pytest.mark.parametrize(
    "changes",
    [
        {"max_active_sessions": 0},
        {"max_concurrent_queries": -1},
        {"idle_timeout_seconds": 10**9},
        {"colour": "blue"},
    ],
)
def test_invalid_limits_are_refused_and_change_nothing(changes, django_capture_on_commit_callbacks):
    GateSettings.load()
    with django_capture_on_commit_callbacks(execute=True):
        services.limits_push(GateSettings.load())
    before = get_manager().config()
    with pytest.raises((ValidationError, TypeError)):
        services.limits_set(actor=None, **changes)
    assert get_manager().config() == before
    assert not AuditEvent.objects.exists()


def test_staff_promotion_admits_over_the_limit_and_is_labelled():
    set_limit(1)
    first, second = make_users(2)
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    services.session_open(user=first)
    queued = services.session_open(user=second)
    result = services.session_promote(session_id=queued.session_id, how="admit", actor=staff)
    assert result.outcome == "admitted" and result.over_limit
    row = ChatSession.objects.get(id=queued.session_id)
    assert row.state == "active" and row.admitted_over_limit
    assert AuditEvent.objects.get().action == "session.admit"


@pytest.fixture
def redis_down(settings):
    """Point the gate at a port where no Redis listens."""
    from sessions_app.devredis import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    admission.reset_manager()
    yield
    admission.reset_manager()


def test_unreachable_redis_raises_one_clear_exception_and_admits_nobody(redis_down):
    (person,) = make_users(1)
    with pytest.raises(GateUnavailable, match="unreachable"):
        services.session_open(user=person)
    assert not ChatSession.objects.exists()


def test_healthz_reports_redis_down_with_503(client, redis_down):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response["Retry-After"]
    body = response.json()
    assert body["status"] == "unavailable" and "redis" in body["problems"]


def test_healthz_ok_when_redis_and_database_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "redis": "ok", "database": "ok"}


def test_sweep_command_reports_what_it_did(capsys):
    call_command("sweep_sessions")
    assert "expired 0, abandoned 0, promoted 0" in capsys.readouterr().out


def test_sweep_command_fails_with_a_sentence_when_redis_is_down(redis_down):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unreachable"):
        call_command("sweep_sessions")


def test_ensure_admin_creates_one_staff_account_once(capsys, monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    call_command("ensure_admin")
    first = capsys.readouterr().out
    assert "password:" in first
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser and admin.has_usable_password()
    call_command("ensure_admin")
    assert "password:" not in capsys.readouterr().out
    assert User.objects.filter(is_superuser=True).count() == 1


# --- generation slots ------------------------------------------------------------------------


def test_generation_slot_refuses_a_queued_session():
    set_limit(1)
    first, second = make_users(2)
    services.session_open(user=first)
    queued = services.session_open(user=second)

    async def attempt() -> None:
        async with generation.generation_slot(session_id=queued.session_id, timeout=1):
            pass

    with pytest.raises(services.NotActive):
        asyncio.run(attempt())


def test_generation_slot_times_out_when_no_slot_frees_and_leaves_no_waiter():
    get_manager().set_limits({"max_concurrent_queries": 1})
    first, second = make_users(2)
    a = services.session_open(user=first).session_id
    b = services.session_open(user=second).session_id
    places: list[int] = []

    async def scenario() -> None:
        async with generation.generation_slot(session_id=a, timeout=1):

            async def on_wait(place: int) -> None:
                places.append(place)

            with pytest.raises(generation.CapacityTimeout):
                async with generation.generation_slot(session_id=b, on_wait=on_wait, timeout=0.3):
                    pass

    asyncio.run(scenario())
    assert places == [1]
    assert get_manager().counts() == {
        "active": 2,
        "queued": 0,
        "in_flight": 0,
        "waiting_queries": 0,
    }


def test_a_cancelled_generation_gives_its_slot_back_at_once():
    (person,) = make_users(1)
    sid = services.session_open(user=person).session_id
    entered = asyncio.Event()

    async def generate() -> None:
        async with generation.generation_slot(session_id=sid, timeout=1):
            entered.set()
            await asyncio.sleep(60)

    async def scenario() -> int:
        task = asyncio.create_task(generate())
        await entered.wait()
        assert get_manager().counts()["in_flight"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return get_manager().counts()["in_flight"]

    assert asyncio.run(scenario()) == 0


def test_a_lost_lease_stops_the_generation_at_once():
    """A lease gone from Redis (restart, expiry) may already serve someone else: the body is
    cancelled at the next renewal instead of generating on beyond the limit."""
    manager = get_manager()
    manager.set_limits({"lease_ttl_seconds": 1})
    (person,) = make_users(1)
    sid = services.session_open(user=person).session_id
    reached_the_end = False

    async def scenario() -> None:
        nonlocal reached_the_end
        with pytest.raises(generation.SlotLost):
            async with generation.generation_slot(session_id=sid, timeout=1) as lease:
                manager.client.zrem(manager.keys.slots, lease)  # Redis lost it
                await asyncio.sleep(60)  # still "generating"
                reached_the_end = True

    asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    assert reached_the_end is False
    assert manager.counts()["in_flight"] == 0


def test_a_generation_cancelled_while_its_grant_is_in_flight_leaves_no_lease():
    manager = get_manager()
    (person,) = make_users(1)
    sid = services.session_open(user=person).session_id

    async def scenario() -> None:
        task = asyncio.create_task(_enter_slot(sid))
        await asyncio.sleep(0)  # the acquire call is running in its thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert manager.counts()["in_flight"] == 0
    assert manager.counts()["waiting_queries"] == 0


async def _enter_slot(sid: str) -> None:
    async with generation.generation_slot(session_id=sid, timeout=1):
        await asyncio.sleep(60)
