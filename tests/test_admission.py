"""Each transition of admission.py against a real Redis, with an explicit clock."""

from __future__ import annotations

import pytest

from sessions_app.gate.admission import AdmissionManager
from sessions_app.gate.keys import RedisKeys
from sessions_app.gate.slots import parse_grants

T0 = 1_000_000.0


def fill(
    manager: AdmissionManager, n: int, *, start: int = 0, now: float = T0, via: str = "page"
) -> list[str]:
    return [
        manager.open(f"u{start + i}", via=via, now=now + i * 0.001).session_id for i in range(n)
    ]


def test_open_admits_until_the_limit_then_queues_in_arrival_order(manager):
    manager.set_limits({"max_active_sessions": 3})
    results = [manager.open(f"u{i}", now=T0 + i) for i in range(6)]
    assert [r.state for r in results] == ["active"] * 3 + ["queued"] * 3
    assert [r.position for r in results[3:]] == [1, 2, 3]
    assert manager.queue_order() == [r.session_id for r in results[3:]]
    assert manager.counts()["active"] == 3


def test_same_person_opening_twice_gets_the_same_session(manager):
    manager.set_limits({"max_active_sessions": 1})
    first = manager.open("alice", now=T0)
    again = manager.open("alice", now=T0 + 1)
    assert again.session_id == first.session_id
    assert again.created is False and first.created is True
    queued = manager.open("bob", now=T0 + 2)
    queued_again = manager.open("bob", now=T0 + 3)
    assert (queued_again.session_id, queued_again.state, queued_again.position) == (
        queued.session_id,
        "queued",
        1,
    )
    assert manager.counts() == {"active": 1, "queued": 1, "in_flight": 0, "waiting_queries": 0}


def test_close_promotes_the_head_at_once(manager):
    manager.set_limits({"max_active_sessions": 2})
    a, _b, c, d = fill(manager, 4)
    result = manager.close(a, reason="user", now=T0 + 10)
    assert result.closed and result.previous_state == "active"
    assert result.promoted == [c]
    assert manager.session_info(c).state == "active"
    assert manager.position(d) == 1
    assert manager.session_of_user("u0") is None


def test_closing_a_queued_session_moves_people_behind_it_up(manager):
    manager.set_limits({"max_active_sessions": 1})
    _a, b, c, d = fill(manager, 4)
    result = manager.close(c, reason="user", now=T0 + 1)
    assert result.promoted == []
    assert manager.queue_order() == [b, d]
    assert manager.position(d) == 2


def test_closing_twice_is_harmless(manager):
    (a,) = fill(manager, 1)
    assert manager.close(a, reason="user", now=T0 + 1).closed is True
    second = manager.close(a, reason="user", now=T0 + 2)
    assert second.closed is False and second.previous_state == ""


def test_raising_the_limit_promotes_at_once(manager):
    manager.set_limits({"max_active_sessions": 2})
    ids = fill(manager, 6)
    promoted = manager.set_limits({"max_active_sessions": 5}, now=T0 + 5)
    assert promoted == ids[2:5]
    assert manager.counts()["active"] == 5
    assert manager.queue_order() == [ids[5]]


def test_lowering_the_limit_evicts_nobody_and_stops_promotions(manager):
    manager.set_limits({"max_active_sessions": 4})
    ids = fill(manager, 6)
    assert manager.set_limits({"max_active_sessions": 2}, now=T0 + 1) == []
    assert manager.counts()["active"] == 4
    # Two leave: still at the new limit, so nobody is promoted.
    assert manager.close(ids[0], reason="user", now=T0 + 2).promoted == []
    assert manager.close(ids[1], reason="user", now=T0 + 3).promoted == []
    # The third departure takes the count below 2: the head is promoted.
    assert manager.close(ids[2], reason="user", now=T0 + 4).promoted == [ids[4]]


def test_pause_stops_admissions_and_resume_promotes(manager):
    manager.set_limits({"max_active_sessions": 5, "admissions_paused": 1})
    first = manager.open("u1", now=T0)
    assert first.state == "queued"  # nobody new becomes active while paused
    promoted = manager.set_limits({"admissions_paused": 0}, now=T0 + 1)
    assert promoted == [first.session_id]


def test_priority_lane_goes_ahead_of_the_normal_lane(manager):
    manager.set_limits({"max_active_sessions": 1, "priority_lead": 20})
    fill(manager, 1)  # the one seat
    normal = [manager.open(f"n{i}", now=T0 + i).session_id for i in range(3)]
    vip = manager.open("vip", lane="priority", now=T0 + 10)
    assert vip.position == 1
    assert manager.queue_order() == [vip.session_id, *normal]


def test_priority_lane_cannot_starve_the_normal_lane(manager):
    """A normal-lane person is overtaken by at most `priority_lead` priority arrivals."""
    lead = 3
    manager.set_limits({"max_active_sessions": 1, "priority_lead": lead})
    fill(manager, 1)
    waiting = manager.open("patient", now=T0).session_id
    vips = [manager.open(f"vip{i}", lane="priority", now=T0 + 1 + i).session_id for i in range(10)]
    order = manager.queue_order()
    # Only the `lead` priority arrivals that came right after them overtake them.
    assert order.index(waiting) == lead
    assert order[:lead] == vips[:lead]
    assert order[lead + 1 :] == vips[lead:]


def test_front_moves_a_queued_person_to_the_head(manager):
    manager.set_limits({"max_active_sessions": 1})
    _a, b, c, d = fill(manager, 4)
    result = manager.promote(d, how="front", now=T0 + 1)
    assert result.outcome == "front"
    assert manager.queue_order() == [d, b, c]


def test_admit_now_goes_above_the_limit_and_is_labelled(manager):
    manager.set_limits({"max_active_sessions": 1})
    _a, b = fill(manager, 2)
    result = manager.promote(b, how="admit", now=T0 + 1)
    assert (result.outcome, result.over_limit) == ("admitted", True)
    assert manager.counts()["active"] == 2
    assert manager.session_info(b).over_limit is True
    assert manager.promote(b, how="admit", now=T0 + 2).outcome == "not_queued"


def test_idle_expiry_at_the_deadline_and_not_a_second_before(manager):
    manager.set_limits(
        {"max_active_sessions": 1, "idle_timeout_seconds": 100, "disconnect_grace_seconds": 3600}
    )
    a, b = fill(manager, 2)
    manager.touch(a, kind="activity", now=T0 + 50)
    early = manager.sweep(now=T0 + 50 + 99)
    assert early.expired == [] and manager.session_info(a).state == "active"
    due = manager.sweep(now=T0 + 50 + 100)
    assert due.expired == [a]
    assert due.promoted == [b]


def test_a_touch_never_revives_a_session_past_its_deadline(manager):
    manager.set_limits({"idle_timeout_seconds": 100})
    (a,) = fill(manager, 1)
    result = manager.touch(a, kind="activity", now=T0 + 100)
    assert result.state == "expired"
    assert manager.session_info(a) is None


def test_abandoned_after_the_grace_when_no_page_is_open(manager):
    manager.set_limits({"max_active_sessions": 1, "disconnect_grace_seconds": 120})
    page_user = manager.open("page", via="page", now=T0).session_id
    queued = manager.open("waiter", via="page", now=T0).session_id
    manager.touch(queued, kind="presence", now=T0 + 100)
    # page_user's page was last seen at T0; waiter's at T0+100.
    result = manager.sweep(now=T0 + 119)
    assert result.abandoned == []
    result = manager.sweep(now=T0 + 120)
    assert result.abandoned == [page_user]
    assert result.promoted == [queued]
    result = manager.sweep(now=T0 + 100 + 120)
    assert result.abandoned == [queued]


def test_an_api_session_that_became_active_is_not_abandoned_for_lack_of_a_page(manager):
    manager.set_limits({"disconnect_grace_seconds": 120, "idle_timeout_seconds": 1800})
    api = manager.open("service-user", via="api", now=T0).session_id
    result = manager.sweep(now=T0 + 1000)
    assert result.abandoned == []
    assert manager.session_info(api).state == "active"
    assert manager.sweep(now=T0 + 1800).expired == [api]


def test_a_queued_api_session_must_keep_polling(manager):
    manager.set_limits({"max_active_sessions": 1, "disconnect_grace_seconds": 60})
    fill(manager, 1, via="api")  # holds the seat without a page
    polled = manager.open("poller", via="api", now=T0).session_id
    for t in range(5, 300, 5):  # the earlier client polled every 5 s
        assert manager.touch(polled, kind="poll", now=T0 + t).state == "queued"
    assert manager.sweep(now=T0 + 300).abandoned == []
    assert manager.sweep(now=T0 + 295 + 60).abandoned == [polled]


def test_slots_are_limited_fifo_and_one_per_session(manager):
    manager.set_limits({"max_active_sessions": 5, "max_concurrent_queries": 2})
    a, b, c, d = fill(manager, 4)
    ga = manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0)
    gb = manager.acquire_slot(b, waiter_id=f"{b}:1", now=T0)
    assert ga.outcome == gb.outcome == "granted"
    # Full: c waits first, then d; a's second message waits behind a's first.
    assert manager.acquire_slot(c, waiter_id=f"{c}:1", now=T0).place == 1
    assert manager.acquire_slot(d, waiter_id=f"{d}:1", now=T0).place == 2
    a2 = manager.acquire_slot(a, waiter_id=f"{a}:2", now=T0)
    assert a2.outcome == "wait" and a2.blocked_by_own_session
    # A frees its slot: c (first in line) gets it, d does not jump ahead.
    assert manager.release_slot(a, lease_id=ga.lease_id, now=T0 + 1)
    assert manager.acquire_slot(d, waiter_id=f"{d}:1", now=T0 + 1).outcome == "wait"
    assert manager.acquire_slot(c, waiter_id=f"{c}:1", now=T0 + 1).outcome == "granted"
    assert manager.counts()["in_flight"] == 2


def test_release_is_compare_and_delete(manager):
    manager.set_limits({"max_concurrent_queries": 1})
    (a,) = fill(manager, 1)
    granted = manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0)
    assert manager.release_slot(a, lease_id="not-my-lease", now=T0) is False
    assert manager.counts()["in_flight"] == 1
    assert manager.release_slot(a, lease_id=granted.lease_id, now=T0) is True
    assert manager.release_slot(a, lease_id=granted.lease_id, now=T0) is False


def test_lease_expiry_reclaims_the_slot_and_renewal_keeps_it(manager):
    manager.set_limits({"max_concurrent_queries": 1, "lease_ttl_seconds": 30})
    a, b = fill(manager, 2)
    lease = manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0).lease_id
    assert manager.renew_slot(lease, now=T0 + 20)  # deadline now T0 + 50
    assert manager.acquire_slot(b, waiter_id=f"{b}:1", now=T0 + 49).outcome == "wait"
    assert manager.sweep(now=T0 + 49).reclaimed == 0
    assert manager.sweep(now=T0 + 50).reclaimed == 1
    assert manager.renew_slot(lease, now=T0 + 51) is False  # a dead lease stays dead
    assert manager.acquire_slot(b, waiter_id=f"{b}:1", now=T0 + 51).outcome == "granted"


def test_queued_session_cannot_take_a_slot(manager):
    manager.set_limits({"max_active_sessions": 1})
    _a, b = fill(manager, 2)
    assert manager.acquire_slot(b, waiter_id=f"{b}:1", now=T0).outcome == "not_active"


def test_a_waiter_that_stops_polling_does_not_block_the_line(manager):
    manager.set_limits({"max_concurrent_queries": 1, "lease_ttl_seconds": 10})
    a, b, c = fill(manager, 3)
    lease = manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0).lease_id
    assert manager.acquire_slot(b, waiter_id=f"{b}:1", now=T0).place == 1  # then b vanishes
    assert manager.acquire_slot(c, waiter_id=f"{c}:1", now=T0).place == 2
    manager.release_slot(a, lease_id=lease, now=T0 + 1)
    assert manager.acquire_slot(c, waiter_id=f"{c}:1", now=T0 + 11).outcome == "granted"


def test_unknown_arguments_are_refused_before_reaching_redis(manager):
    with pytest.raises(ValueError):
        manager.open("x", lane="vip")
    with pytest.raises(ValueError):
        manager.close("x", reason="because")
    with pytest.raises(ValueError):
        manager.promote("x", how="sideways")


def test_time_comes_from_redis_when_no_clock_is_passed(manager):
    opened = manager.open("clockless")
    info = manager.session_info(opened.session_id)
    assert abs(info.created - manager.server_time()) < 5


def test_close_only_if_queued_refuses_someone_already_promoted(manager):
    manager.set_limits({"max_active_sessions": 1})
    a, b = fill(manager, 2)
    manager.close(a, reason="user", now=T0 + 1)  # b is promoted
    refused = manager.close(b, reason="admin", only_if_state="queued", now=T0 + 2)
    assert (refused.closed, refused.refused_state) == (False, "active")
    assert manager.session_info(b).state == "active"
    gone = manager.close(a, reason="admin", only_if_state="queued", now=T0 + 3)
    assert gone.refused_state == "none"


def test_without_limits_in_redis_the_recorded_ones_are_put_back_first(redis_client):
    """After a restart Redis has no limits; nobody may be admitted under fallback values."""
    asked = []

    def recorded() -> dict[str, int]:
        asked.append(True)
        return {"max_active_sessions": 1, "admissions_paused": 0}

    manager = AdmissionManager(redis_client, RedisKeys("t-noconfig"), config_loader=recorded)
    for key in redis_client.scan_iter(match=manager.keys.all_pattern()):
        redis_client.delete(key)
    assert manager.open("first", now=T0).state == "active"
    assert manager.open("second", now=T0).state == "queued"  # limit 1, not the default 20
    assert asked == [True]


def test_a_freed_slot_is_handed_to_the_front_waiter_in_the_same_call(manager):
    manager.set_limits({"max_active_sessions": 5, "max_concurrent_queries": 1})
    a, b, c = fill(manager, 3)
    held = manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0)
    mine = manager.acquire_slot(b, waiter_id=f"{b}:1", lease_id="lease-b", now=T0)
    assert manager.acquire_slot(c, waiter_id=f"{c}:1", now=T0).place == 2
    assert mine.outcome == "wait" and (mine.wait_limit, mine.lease_ttl) == (60, 30)
    pubsub = manager.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(manager.keys.slot_free)
    assert manager.release_slot(a, lease_id=held.lease_id, now=T0 + 1)
    assert manager.live_leases() == {"lease-b"}  # b's own lease id, c still waits
    message = None
    for _ in range(10):  # the first read may be the (ignored) subscribe confirmation
        message = message or pubsub.get_message(timeout=0.5)
    assert message is not None
    assert parse_grants(message["data"])[f"{b}:1"].lease_id == "lease-b"
    pubsub.close()
    # b's next poll (whatever lease id it passes) is told it holds its slot, not queued again.
    again = manager.acquire_slot(b, waiter_id=f"{b}:1", now=T0 + 2)
    assert (again.outcome, again.lease_id) == ("granted", "lease-b")
    assert manager.counts()["waiting_queries"] == 1  # c only


def test_a_waiter_overdue_for_its_poll_is_not_handed_a_slot_but_keeps_its_place(manager):
    manager.set_limits({"max_active_sessions": 5, "max_concurrent_queries": 1})
    a, b, c = fill(manager, 3)
    held = manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0)
    manager.acquire_slot(b, waiter_id=f"{b}:1", poll_within=2, now=T0)
    manager.acquire_slot(c, waiter_id=f"{c}:1", poll_within=60, now=T0)
    manager.release_slot(a, lease_id=held.lease_id, now=T0 + 5)  # b promised a poll by T0 + 2
    assert manager.counts()["in_flight"] == 0  # nobody handed it: c does not jump ahead of b
    assert manager.acquire_slot(c, waiter_id=f"{c}:1", now=T0 + 5).outcome == "wait"
    assert manager.acquire_slot(b, waiter_id=f"{b}:1", now=T0 + 5).outcome == "granted"


def test_handing_over_keeps_one_query_per_session_and_skips_ended_sessions(manager):
    manager.set_limits({"max_active_sessions": 4, "max_concurrent_queries": 2})
    a, b, c, d = fill(manager, 4)
    held_a = manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0)
    held_d = manager.acquire_slot(d, waiter_id=f"{d}:1", now=T0)
    manager.acquire_slot(a, waiter_id=f"{a}:2", now=T0)  # a's second question, blocked by a
    manager.acquire_slot(b, waiter_id=f"{b}:1", now=T0)
    manager.acquire_slot(c, waiter_id=f"{c}:1", now=T0)
    manager.close(b, reason="user", now=T0)  # b's question is now of an ended session
    manager.release_slot(d, lease_id=held_d.lease_id, now=T0 + 1)
    # a's second question waits for a's first; b's is dropped, not granted; c gets the slot.
    assert manager.live_leases() == {held_a.lease_id, manager.session_info(c).lease}
    assert manager.counts()["waiting_queries"] == 1  # a's second question only
    manager.release_slot(a, lease_id=held_a.lease_id, now=T0 + 2)
    assert manager.acquire_slot(a, waiter_id=f"{a}:2", now=T0 + 2).outcome == "granted"


def test_raising_the_query_limit_hands_the_new_slots_to_waiting_queries(manager):
    manager.set_limits({"max_active_sessions": 5, "max_concurrent_queries": 1})
    a, b, c, d = fill(manager, 4)
    manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0)
    for sid in (b, c, d):
        manager.acquire_slot(sid, waiter_id=f"{sid}:1", now=T0)
    manager.set_limits({"max_concurrent_queries": 3}, now=T0 + 1)
    assert manager.counts()["in_flight"] == 3
    assert manager.acquire_slot(d, waiter_id=f"{d}:1", now=T0 + 1).place == 1


def test_a_handed_over_lease_takes_its_hold_only_when_its_waiter_takes_it(manager):
    """A waiter whose process died after its last poll ties up the slot for one lease TTL, not
    for its whole generation cap; the hold starts when the waiter starts."""
    manager.set_limits({"max_active_sessions": 5, "max_concurrent_queries": 1})
    a, b, c = fill(manager, 3)
    held = manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0)
    manager.acquire_slot(b, waiter_id=f"{b}:1", lease_id="lb", hold_seconds=120, now=T0)
    manager.acquire_slot(c, waiter_id=f"{c}:1", lease_id="lc", hold_seconds=120, now=T0)
    manager.release_slot(a, lease_id=held.lease_id, now=T0 + 1)

    def deadline(lease: str) -> float:
        return float(manager.client.zscore(manager.keys.slots, lease))

    assert deadline("lb") == T0 + 1 + 30  # one lease TTL, no hold yet
    # Pushed: the waiter takes its hold as it starts.
    assert manager.renew_slot("lb", hold_seconds=120, now=T0 + 2)
    assert deadline("lb") == T0 + 2 + 120
    manager.release_slot(b, lease_id="lb", now=T0 + 3)
    assert deadline("lc") == T0 + 3 + 30
    # Or by its poll.
    assert (
        manager.acquire_slot(c, waiter_id=f"{c}:1", hold_seconds=120, now=T0 + 4).lease_id == "lc"
    )
    assert deadline("lc") == T0 + 4 + 120


def test_the_holds_of_several_handed_over_leases_are_taken_in_one_call(manager):
    manager.set_limits({"max_active_sessions": 5, "max_concurrent_queries": 1})
    a, b, c = fill(manager, 3)
    manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0)
    manager.acquire_slot(b, waiter_id=f"{b}:1", lease_id="lb", now=T0)
    manager.acquire_slot(c, waiter_id=f"{c}:1", lease_id="lc", now=T0)
    manager.set_limits({"max_concurrent_queries": 3}, now=T0 + 1)  # hands lb and lc over
    assert manager.take_holds([("lb", 120), ("gone", 120), ("lc", 90)], now=T0 + 2) == [
        True,
        False,
        True,
    ]
    slots = manager.keys.slots
    assert float(manager.client.zscore(slots, "lb")) == T0 + 2 + 120
    assert float(manager.client.zscore(slots, "lc")) == T0 + 2 + 90
    assert manager.client.zscore(slots, "gone") is None
    # A Redis that lost its scripts (restarted): loaded again, the batch goes through.
    manager.client.script_flush()
    assert manager.take_holds([("lb", 130), ("lc", 130)], now=T0 + 3) == [True, True]
    assert float(manager.client.zscore(slots, "lc")) == T0 + 3 + 130


def test_a_lease_reclaimed_by_a_poll_goes_to_the_front_waiter(manager):
    manager.set_limits({"max_active_sessions": 5, "max_concurrent_queries": 1})
    a, b, c = fill(manager, 3)
    manager.acquire_slot(a, waiter_id=f"{a}:1", now=T0)  # then a's process stops renewing
    manager.acquire_slot(b, waiter_id=f"{b}:1", lease_id="lb", poll_within=60, now=T0)
    # c's poll, after a's lease ran out, reclaims it: b (ahead of c) is handed the slot.
    assert manager.acquire_slot(c, waiter_id=f"{c}:1", now=T0 + 31).place == 1
    assert manager.live_leases() == {"lb"}
