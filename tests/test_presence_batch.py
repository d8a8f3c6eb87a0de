"""Presence in batches: one `touch_many` script call renews every open page of a process, with
exactly the rule one `touch(kind="presence")` per page applied (abandonment, idle expiry,
promotion of the heads), and the SQL record follows."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from sessions_app.gate import services
from sessions_app.gate.admission import AdmissionManager, get_manager
from sessions_app.models import ChatSession

T0 = 1_000_000.0


def test_one_call_renews_every_page_like_one_touch_each(manager: AdmissionManager) -> None:
    manager.set_limits({"max_active_sessions": 1, "disconnect_grace_seconds": 120})
    ids = [manager.open(f"u{i}", via="page", now=T0 + i * 0.001).session_id for i in range(4)]
    closed, promoted = manager._run("touch_many", *ids, "no-such-session", now=T0 + 100)
    assert closed == [] and promoted == []
    seen = manager.seen_times(ids)
    assert all(seen[i] == pytest.approx(T0 + 100) for i in ids)
    # Renewed at T0+100: nobody is abandoned before T0+220 ...
    assert manager.sweep(now=T0 + 219).abandoned == []
    # ... and a page not renewed since is abandoned at the grace, the next head promoted.
    manager._run("touch_many", *ids[1:], now=T0 + 200)
    assert manager.sweep(now=T0 + 220).abandoned == [ids[0]]
    assert manager.session_info(ids[1]).state == "active"


def test_a_batch_ends_those_already_past_due_and_promotes_once(manager: AdmissionManager) -> None:
    manager.set_limits(
        {"max_active_sessions": 2, "disconnect_grace_seconds": 120, "idle_timeout_seconds": 300}
    )
    ids = [manager.open(f"u{i}", via="page", now=T0 + i * 0.001).session_id for i in range(5)]
    manager.touch(ids[3], kind="presence", now=T0 + 100)  # the others were last seen at T0
    # At T0+150 the two active ones and ids[2], ids[4] are past the grace; ids[3] is not.
    closed, promoted = manager._run("touch_many", *ids, now=T0 + 150)
    assert dict(zip(closed[::2], closed[1::2], strict=True)) == {
        ids[0]: "abandoned",
        ids[1]: "abandoned",
        ids[2]: "abandoned",
        ids[4]: "abandoned",
    }
    assert promoted == [ids[3]]
    assert manager.session_info(ids[3]).state == "active"
    # The same, one touch per page, on a fresh prefix: the same outcome.
    other = AdmissionManager(manager.client, type(manager.keys)(manager.keys.prefix + "x"))
    other.set_limits(
        {"max_active_sessions": 2, "disconnect_grace_seconds": 120, "idle_timeout_seconds": 300}
    )
    ids2 = [other.open(f"u{i}", via="page", now=T0 + i * 0.001).session_id for i in range(5)]
    other.touch(ids2[3], kind="presence", now=T0 + 100)
    states = [other.touch(i, kind="presence", now=T0 + 150).state for i in ids2]
    assert states == ["abandoned", "abandoned", "abandoned", "active", "abandoned"]


@pytest.mark.django_db
def test_the_service_uses_one_call_per_batch_and_records_the_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager = get_manager()
    manager.set_limits({"max_active_sessions": 1, "disconnect_grace_seconds": 120})
    users = [User.objects.create_user(f"p{i}", password="x") for i in range(3)]
    ids = [services.session_open(user=u).session_id for u in users]
    # The active person's page was last seen long ago: the batch ends it, the next is promoted.
    manager.client.zadd(manager.keys.seen, {ids[0]: manager.server_time() - 1000})
    calls: list[int] = []
    run = manager._run

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("touch"):
            calls.append(len(args))
        return run(name, *args, **kwargs)

    monkeypatch.setattr(manager, "_run", counting)
    monkeypatch.setattr(services, "PRESENCE_BATCH", 2)
    pages = ids + [f"gone{i}" for i in range(2)]  # 5 pages: batches of 2, 2, 1
    assert services.sessions_touch_presence(pages) == {ids[0]: "abandoned"}
    assert calls == [2, 2, 1]
    assert ChatSession.objects.get(id=ids[0]).state == ChatSession.State.CLOSED
    assert ChatSession.objects.get(id=ids[1]).state == ChatSession.State.ACTIVE
