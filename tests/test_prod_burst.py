"""Issue 11, "No spurious unavailable": a burst of creates over several real daphne processes
(one gateway token) gets zero 503s while Redis is up, and the gate's rules still hold.

Measured on main: 12 of 2,000 creates over 4 processes answered 503 "the admission store is
unreachable" with Redis healthy. Django's ASGI handler runs every sync view in a thread of its
own, so a burst of 500 per process is ~500 threads wanting one of 64 pooled Redis connections:
a wait past the pool's 5 s timeout raised redis-py's ConnectionError("No connection
available."), which the gate reported as "unreachable" (DESIGN.md §7).
"""

from __future__ import annotations

import asyncio
import collections
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from sessions_app.gate.admission import get_manager
from sessions_app.models import ApiToken, ChatSession
from tests.burst_client import Answer, request
from tests.live import DaphneServer, start_daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

# 2,000 over 4 processes is the issue's figure; PROD_BURST overrides it on a slower machine.
BURST = int(os.environ.get("PROD_BURST", "2000"))
PROCESSES = int(os.environ.get("PROD_BURST_PROCESSES", "4"))
MAX_ACTIVE = 20


@pytest.fixture
def servers(tmp_path: Path) -> list[DaphneServer]:
    started = [
        start_daphne(
            tmp_path,
            name=f"d{i}",
            # The per-token budget would refuse most of a 2,000 burst with 429s (correctly);
            # this test is about 503s.
            API_TOKEN_CREATE_RATE_PER_MINUTE="1000000",
        )
        for i in range(PROCESSES)
    ]
    yield started
    for server in started:
        server.stop()


async def _burst(ports: list[int], token: str) -> list[Answer | BaseException]:
    headers = {"Authorization": f"Bearer {token}"}
    calls = [
        request(
            ports[i % len(ports)],
            "POST",
            "/api/v1/session/create",
            body={"user_id": f"burst{i:05d}"},
            headers=headers,
        )
        for i in range(BURST)
    ]
    return await asyncio.gather(*calls, return_exceptions=True)


def test_a_burst_over_several_processes_gets_no_503_with_redis_up(
    servers: list[DaphneServer],
) -> None:
    manager = get_manager()
    manager.set_limits(
        {
            "max_active_sessions": MAX_ACTIVE,
            "disconnect_grace_seconds": 3600,
            "idle_timeout_seconds": 3600,
        }
    )
    owner = get_user_model().objects.create_user("gateway")
    _row, token = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)

    answers = asyncio.run(_burst([s.port for s in servers], token))

    failures = [a for a in answers if isinstance(a, BaseException)]
    assert not failures, f"{len(failures)} requests failed at the socket: {failures[:3]!r}"
    done = [a for a in answers if isinstance(a, Answer)]
    statuses = collections.Counter(a.status for a in done)
    codes = collections.Counter(
        a.body.get("error", {}).get("code") for a in done if a.status >= 400
    )
    slowest = max(a.elapsed for a in done)
    print(f"\n{BURST} creates over {PROCESSES} processes: {dict(statuses)} {dict(codes)}, "
          f"slowest answer {slowest:.1f} s")  # fmt: skip
    messages = collections.Counter(a.body["error"]["message"] for a in done if a.status >= 500)
    assert statuses[503] == 0, (
        f"spurious 503s with Redis up: {dict(messages)}; "
        f"the servers logged: {[e for s in servers for e in s.errors()]}"
    )
    assert statuses == {201: BURST}, dict(codes)

    # The rules held through the burst: exactly the limit active, the rest queued in order,
    # and every answer's position is the person's exact place in line.
    counts = manager.counts()
    assert counts["active"] == MAX_ACTIVE
    assert counts["queued"] == BURST - MAX_ACTIVE
    queued = [a for a in done if a.body["status"] == "queued"]
    assert sorted(a.body["position"] for a in queued) == list(range(1, BURST - MAX_ACTIVE + 1))
    assert ChatSession.objects.filter(state__in=["active", "queued"]).count() == BURST
