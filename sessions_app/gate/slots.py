"""The generation slot semaphore's three calls (lua/acquire_slot.lua, renew_slot.lua,
release_slot.lua) and what they answer, mixed into AdmissionManager.

A freed slot is granted to the front waiting query by the script that frees it (hand_over in
lua/_lib.lua) and published on the handoff channel as JSON: [[waiter id, lease id, deadline],
...]. The waiter's process hears it (chat/handoff.py) and starts at once, taking the lease's
generation hold as it does (renew_slot with `hold_seconds`); a waiter that missed the message
is told on its next poll, by the same acquire_slot.lua call that queued it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SlotResult:
    outcome: str  # "granted" | "wait" | "not_active"
    lease_id: str = ""
    deadline: float = 0.0
    place: int = 0
    blocked_by_own_session: bool = False
    # The live limits the script ran under (read in the same call, not one more round trip).
    wait_limit: float = 0.0
    lease_ttl: float = 0.0


def _slot_result(reply: list[Any]) -> SlotResult:
    outcome, first, second = reply[0], reply[1], reply[2]
    wait_limit, lease_ttl = float(reply[3]), float(reply[4])
    if outcome == "granted":
        return SlotResult(
            outcome,
            lease_id=first,
            deadline=float(second),
            wait_limit=wait_limit,
            lease_ttl=lease_ttl,
        )
    if outcome == "wait":
        return SlotResult(
            outcome,
            place=int(first),
            blocked_by_own_session=bool(int(second)),
            wait_limit=wait_limit,
            lease_ttl=lease_ttl,
        )
    return SlotResult("not_active", wait_limit=wait_limit, lease_ttl=lease_ttl)


def _hold_arg(seconds: float) -> str:
    """renew_slot.lua's optional hold: "" for none."""
    return repr(float(seconds)) if seconds else ""


def parse_grants(payload: bytes | str) -> dict[str, SlotResult]:
    """The grants one handoff message announces, by waiter id."""
    return {
        waiter: SlotResult("granted", lease_id=lease, deadline=float(deadline))
        for waiter, lease, deadline in json.loads(payload)
    }


class SlotScripts:
    """Needs the manager's `_run` and `_run_batch` (a script by name, with the shared keys and
    argv; once, or over several argument lists in one round trip)."""

    def _run(self, name: str, *args: Any, now: float | None = None) -> Any:
        raise NotImplementedError

    def _run_batch(
        self, name: str, calls: list[tuple[Any, ...]], *, now: float | None = None
    ) -> list[Any]:
        raise NotImplementedError

    def acquire_slot(
        self,
        session_id: str,
        *,
        waiter_id: str,
        lease_id: str = "",
        hold_seconds: float = 0,
        poll_within: float | None = None,
        now: float | None = None,
    ) -> SlotResult:
        """One poll for a slot. A caller that may be cancelled mid-call passes its own
        `lease_id`, so it can release a grant it never saw. `hold_seconds` (the generation
        cap) keeps a granted slot from being reclaimed before that long, renewed or not.
        `poll_within`: the caller polls again within that many seconds; a waiter overdue for
        its poll (its process may be gone) is not handed a freed slot, it asks for it."""
        lease_id = lease_id or uuid.uuid4().hex
        within = "" if poll_within is None else repr(float(poll_within))
        reply = self._run(
            "acquire_slot",
            session_id,
            waiter_id,
            lease_id,
            repr(float(hold_seconds)),
            within,
            now=now,
        )
        return _slot_result(reply)

    def renew_slot(
        self, lease_id: str, *, hold_seconds: float = 0, now: float | None = None
    ) -> bool:
        """Extends a live lease by one TTL; False if it is gone. `hold_seconds`: the cap a
        handed-over lease takes as its waiter starts (it was granted without one)."""
        result = self._run("renew_slot", lease_id, _hold_arg(hold_seconds), now=now)
        return bool(int(result[0]))

    def take_holds(self, holds: list[tuple[str, float]], *, now: float | None = None) -> list[bool]:
        """The generation holds of several handed-over leases (lease id, hold seconds) in one
        round trip: a burst of releases hands out several at once. False for a lease gone."""
        replies = self._run_batch(
            "renew_slot", [(lease_id, _hold_arg(hold)) for lease_id, hold in holds], now=now
        )
        return [bool(int(reply[0])) for reply in replies]

    def release_slot(
        self, session_id: str, *, lease_id: str = "", waiter_id: str = "", now: float | None = None
    ) -> bool:
        """Gives a lease back and/or withdraws a waiting query; the freed slot goes to the front
        waiting query in the same call. True if the lease was still held."""
        released, _grants = self._run("release_slot", lease_id, session_id, waiter_id, now=now)
        return bool(int(released))
