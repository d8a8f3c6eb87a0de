"""A hypothesis state machine drives every transition with a controllable clock and checks the
gate's invariants after every step, against a real Redis."""

from __future__ import annotations

import uuid

import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sessions_app.gate.admission import AdmissionManager
from sessions_app.gate.keys import RedisKeys

USERS = [f"p{i}" for i in range(8)]
T0 = 5_000_000.0


class GateMachine(RuleBasedStateMachine):
    """Model state is kept small: the clock, the limits, and what staff did (admit/front),
    which the invariants need to know to tell a legal over-limit from a bug."""

    def __init__(self) -> None:
        super().__init__()
        import os

        self.client = redis.Redis.from_url(os.environ["REDIS_URL"])
        self.manager = AdmissionManager(self.client, RedisKeys(f"sm{uuid.uuid4().hex[:10]}"))
        self.now = T0
        self.max_active = 3
        self.max_queries = 2
        self.paused = False
        self.moved_to_front: set[str] = set()
        self.leases: dict[str, str] = {}  # lease id -> session id
        self.waiters: dict[str, str] = {}  # waiter id -> session id
        self.prev_regular_active = 0
        self.prev_in_flight = 0

    def teardown(self) -> None:
        for key in self.client.scan_iter(match=self.manager.keys.all_pattern(), count=1000):
            self.client.delete(key)
        self.client.close()

    @initialize()
    def set_up_limits(self) -> None:
        self.manager.set_limits(
            {
                "max_active_sessions": self.max_active,
                "max_concurrent_queries": self.max_queries,
                "idle_timeout_seconds": 300,
                "disconnect_grace_seconds": 60,
                "lease_ttl_seconds": 20,
                "priority_lead": 2,
            },
            now=self.now,
        )

    # --- helpers -------------------------------------------------------------------------------

    def live_sessions(self) -> list[str]:
        """Active then queued, each in ticket order: session ids are random, so any order that
        depends on them (ties in a sorted set) would make hypothesis' replays differ."""
        active = [sid for sid, _ in self.manager.active_with_activity()]
        infos = self.manager.session_infos(active)
        active.sort(key=lambda sid: infos[sid].ticket)
        return active + self.manager.queue_order()

    def active_sessions(self) -> list[str]:
        return self.live_sessions()[: self.manager.counts()["active"]]

    def queued(self) -> list[str]:
        return self.manager.queue_order()

    # --- rules ---------------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), priority=st.booleans(), via=st.sampled_from(["page", "api"]))
    def open(self, user: str, priority: bool, via: str) -> None:
        before = self.manager.session_of_user(user)
        result = self.manager.open(
            user, lane="priority" if priority else "normal", via=via, now=self.now
        )
        if before is not None and result.created is False:
            assert result.session_id == before
        assert result.state in ("active", "queued")

    @precondition(lambda self: bool(self.live_sessions()))
    @rule(data=st.data(), reason=st.sampled_from(["user", "admin"]))
    def close(self, data: st.DataObject, reason: str) -> None:
        sid = data.draw(st.sampled_from(self.live_sessions()))
        heads_before = self.queued()
        result = self.manager.close(sid, reason=reason, now=self.now)
        # Promotions come from the head of the queue, in queue order.
        assert result.promoted == [s for s in heads_before if s != sid][: len(result.promoted)]

    @precondition(lambda self: bool(self.live_sessions()))
    @rule(data=st.data(), kind=st.sampled_from(["presence", "poll", "activity"]))
    def touch(self, data: st.DataObject, kind: str) -> None:
        sid = data.draw(st.sampled_from(self.live_sessions()))
        self.manager.touch(sid, kind=kind, now=self.now)

    @rule(seconds=st.sampled_from([1, 5, 30, 59, 60, 61, 120, 299, 300, 400]))
    def advance_clock(self, seconds: int) -> None:
        self.now += seconds

    @rule()
    def sweep(self) -> None:
        self.manager.sweep(now=self.now)

    @precondition(lambda self: bool(self.manager.queue_order()))
    @rule(data=st.data(), how=st.sampled_from(["admit", "front"]))
    def promote(self, data: st.DataObject, how: str) -> None:
        sid = data.draw(st.sampled_from(self.queued()))
        result = self.manager.promote(sid, how=how, now=self.now)
        if result.outcome == "not_queued":
            # Only because it was already past its grace: ended, not promoted.
            assert self.manager.session_info(sid) is None
            return
        assert result.outcome == ("admitted" if how == "admit" else "front")
        if how == "front":
            self.moved_to_front.add(sid)
            assert self.queued()[0] == sid

    @rule(
        max_active=st.integers(min_value=1, max_value=5),
        max_queries=st.integers(min_value=1, max_value=3),
        paused=st.booleans(),
    )
    def set_limits(self, max_active: int, max_queries: int, paused: bool) -> None:
        self.manager.set_limits(
            {
                "max_active_sessions": max_active,
                "max_concurrent_queries": max_queries,
                "admissions_paused": int(paused),
            },
            now=self.now,
        )
        self.max_active, self.max_queries, self.paused = max_active, max_queries, paused

    @precondition(lambda self: bool(self.manager.active_with_activity()))
    @rule(data=st.data())
    def acquire(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(self.active_sessions()))
        waiter = f"{sid}:{uuid.uuid4().hex[:6]}"
        result = self.manager.acquire_slot(sid, waiter_id=waiter, now=self.now)
        if result.outcome == "granted":
            self.leases[result.lease_id] = sid
        elif result.outcome == "wait":
            self.waiters[waiter] = sid

    @precondition(lambda self: bool(self.waiters))
    @rule(data=st.data())
    def poll_waiter(self, data: st.DataObject) -> None:
        waiter = data.draw(st.sampled_from(list(self.waiters)))  # insertion order
        sid = self.waiters[waiter]
        result = self.manager.acquire_slot(sid, waiter_id=waiter, now=self.now)
        if result.outcome != "wait":
            del self.waiters[waiter]
        if result.outcome == "granted":
            self.leases[result.lease_id] = sid

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(list(self.leases)))
        sid = self.leases.pop(lease)
        self.manager.release_slot(sid, lease_id=lease, now=self.now)
        assert self.manager.release_slot(sid, lease_id=lease, now=self.now) is False

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def limits_hold(self) -> None:
        k = self.manager.keys
        active_ids = [sid for sid, _ in self.manager.active_with_activity()]
        over = sum(1 for sid in active_ids if self.manager.session_info(sid).over_limit)
        regular = len(active_ids) - over
        # Above the limit only by staff admission or by a lowered limit (which evicts nobody):
        # the regular count may then only stay or fall.
        assert regular <= self.max_active or regular <= self.prev_regular_active
        self.prev_regular_active = regular
        in_flight = int(self.client.zcount(k.slots, f"({self.now}", "+inf"))
        assert in_flight <= self.max_queries or in_flight <= self.prev_in_flight
        self.prev_in_flight = in_flight

    @invariant()
    def nobody_both_active_and_queued(self) -> None:
        active = {sid for sid, _ in self.manager.active_with_activity()}
        assert not active & set(self.manager.queue_order())

    @invariant()
    def queue_in_lane_and_ticket_order(self) -> None:
        lead = 2
        order = [sid for sid in self.queued() if sid not in self.moved_to_front]
        infos = [self.manager.session_info(sid) for sid in order]
        keys = [2 * (i.ticket - lead) - 1 if i.lane == "priority" else 2 * i.ticket for i in infos]
        assert keys == sorted(keys)

    @invariant()
    def one_live_session_per_person(self) -> None:
        live = self.live_sessions()
        users = [self.manager.session_info(sid).user for sid in live]
        assert len(users) == len(set(users))
        for sid, user in zip(live, users, strict=True):
            assert self.manager.session_of_user(user) == sid

    @invariant()
    def a_free_seat_means_an_empty_queue(self) -> None:
        counts = self.manager.counts()
        if not self.paused and counts["active"] < self.max_active:
            assert counts["queued"] == 0

    @invariant()
    def every_session_hash_is_indexed(self) -> None:
        k = self.manager.keys
        indexed = set(self.live_sessions())
        hashes = {
            key.decode().rsplit("sess:", 1)[1]
            for key in self.client.scan_iter(match=k.session("*"), count=1000)
        }
        assert hashes == indexed


GateMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestGateMachine = GateMachine.TestCase
