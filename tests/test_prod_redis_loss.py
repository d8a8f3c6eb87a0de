"""Issue 11: after a Redis restart with its data lost, the repair is automatic. A real Redis is
killed and started again empty under a real daphne and a real sweeper (`sweep_sessions
--loop`); within 10 s the sweeper closes as `lost` what Redis no longer holds, the people's live
sockets close with the documented code (4013 while Redis is away, 4000 after `session.closed`),
never 1011, and the gate admits again."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from sessions_app.devredis import free_port, start_server
from sessions_app.gate import admission
from sessions_app.gate.keys import RedisKeys
from sessions_app.models import ChatSession, GateSettings
from tests.live import ROOT, DaphneServer, server_env, start_daphne
from tests.test_chat_live import login_cookie, next_of, open_ws

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]
REPAIR_WITHIN = 10.0  # seconds, the bound


@pytest.fixture
def own_redis(settings: Any) -> Iterator[dict[str, Any]]:
    port = free_port()
    process, url = start_server(port)
    settings.REDIS_URL = url
    admission.reset_manager()
    state: dict[str, Any] = {"process": process, "port": port, "url": url}
    yield state
    state["process"].kill()
    state["process"].wait()
    admission.reset_manager()


@pytest.fixture
def stack(own_redis: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """daphne and the sweeper, as `make run` starts them, on the test's own Redis."""
    gate = GateSettings.load()
    gate.max_active_sessions = 1
    gate.save()
    server = start_daphne(tmp_path, REDIS_URL=own_redis["url"])
    log = (tmp_path / "sweeper.log").open("wb")
    sweeper = subprocess.Popen(
        [sys.executable, "manage.py", "sweep_sessions", "--loop", "--interval", "0.5"],
        cwd=ROOT,
        env=server_env(REDIS_URL=own_redis["url"]),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield {"server": server, "sweeper": sweeper, "log": tmp_path / "sweeper.log"}
    sweeper.terminate()
    sweeper.wait(timeout=10)
    server.stop()


def _wait_for(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


async def _until_closed(ws: ClientConnection, timeout: float) -> tuple[list[dict[str, Any]], int]:
    """Every frame the socket receives until it closes, and its close code."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed:
        pass
    except TimeoutError:
        return frames, -1
    assert ws.close_code is not None
    return frames, ws.close_code


def _records() -> dict[str, tuple[str, str]]:
    return {
        str(row.id): (row.state, row.close_reason) for row in ChatSession.objects.order_by("ticket")
    }


@pytest.mark.parametrize("away", [1.0, 0.0], ids=["away-1s", "back-at-once"])
async def test_redis_restarted_empty_is_repaired_by_the_sweeper_within_10_s(
    own_redis: dict[str, Any], stack: dict[str, Any], away: float
) -> None:
    server: DaphneServer = stack["server"]
    keys = RedisKeys(os.environ.get("CHATGATE_REDIS_PREFIX", "chatgate"))
    client = redis.Redis.from_url(own_redis["url"])
    # The sweeper reconciles once at start and marks it.
    await sync_to_async(_wait_for)(
        lambda: client.get(keys.reconciled) is not None, 30, "the sweeper's first reconcile"
    )
    first = await open_ws(server, await sync_to_async(login_cookie)("first"))
    second = await open_ws(server, await sync_to_async(login_cookie)("second"))
    assert (await next_of(first, "queue.status"))["state"] == "active"
    assert (await next_of(second, "queue.status"))["state"] == "queued"
    before = await sync_to_async(_records)()
    assert [state for state, _ in before.values()] == ["active", "queued"]

    own_redis["process"].kill()  # SIGKILL: nothing saved, nothing said
    own_redis["process"].wait()
    await asyncio.sleep(away)
    own_redis["process"], _ = start_server(own_redis["port"])  # back, empty
    restarted = time.monotonic()

    results = await asyncio.gather(_until_closed(first, 30), _until_closed(second, 30))
    took = await sync_to_async(_wait_for)(
        lambda: all(state == "closed" for state, _ in _records().values()),
        REPAIR_WITHIN,
        "the sweeper closes what Redis lost",
    )
    print(f"\nrepaired {time.monotonic() - restarted:.1f} s after the restart ({took:.1f})")
    after = await sync_to_async(_records)()
    assert {sid: reason for sid, (_, reason) in after.items()} == dict.fromkeys(before, "lost")

    for frames, code in results:
        print("frames", [f.get("type") for f in frames], "closed", code)
        assert code in (4013, 4000), f"closed with {code}: {frames}"
        if code == 4000:
            assert frames[-1] == {"type": "session.closed", "reason": "lost", "note": ""}
        else:
            assert frames[-1]["type"] == "error" and frames[-1]["code"] == "UNAVAILABLE"
    # The sweeper lived through it (a notice lost while Redis was down is a logged warning).
    assert stack["sweeper"].poll() is None
    assert " ERROR " not in stack["log"].read_text()
    assert "Exception inside application" not in server.log()  # what daphne answers 1011

    # The gate admits again: the person who comes back gets a seat (the limit is still 1).
    again = await open_ws(server, await sync_to_async(login_cookie)("third"))
    assert (await next_of(again, "queue.status"))["state"] == "active"
    await again.close()


async def test_lost_admission_data_is_repaired_and_open_pages_are_told(
    own_redis: dict[str, Any], stack: dict[str, Any]
) -> None:
    """A loss that spares the channel layer (what an asynchronous replica promoted in a failover
    may look like: the newest gate writes missing): the same server, so the run id is unchanged;
    the sweeper notices the loss by its missing marker, and the pages, still connected, are told
    `session.closed` with reason `lost` and closed with 4000."""
    server: DaphneServer = stack["server"]
    keys = RedisKeys(os.environ.get("CHATGATE_REDIS_PREFIX", "chatgate"))
    client = redis.Redis.from_url(own_redis["url"])
    await sync_to_async(_wait_for)(
        lambda: client.get(keys.reconciled) is not None, 30, "the sweeper's first reconcile"
    )
    first = await open_ws(server, await sync_to_async(login_cookie)("first"))
    second = await open_ws(server, await sync_to_async(login_cookie)("second"))
    assert (await next_of(first, "queue.status"))["state"] == "active"
    assert (await next_of(second, "queue.status"))["state"] == "queued"
    before = await sync_to_async(_records)()

    gate_keys = list(client.scan_iter(match=keys.all_pattern(), count=1000))
    assert gate_keys and not any(b"asgi" in key for key in gate_keys)
    client.delete(*gate_keys)  # every admission key, the limits and the marker with them
    lost_at = time.monotonic()

    results = await asyncio.gather(_until_closed(first, 20), _until_closed(second, 20))
    took = time.monotonic() - lost_at
    print(f"\npages told {took:.1f} s after the loss")
    after = await sync_to_async(_records)()
    assert {sid: reason for sid, (_, reason) in after.items()} == dict.fromkeys(before, "lost")
    for frames, code in results:
        assert code == 4000, f"closed with {code}: {frames}"
        assert frames[-1] == {"type": "session.closed", "reason": "lost", "note": ""}
    assert took <= REPAIR_WITHIN
    # The sweeper lived through it (a notice lost while Redis was down is a logged warning).
    assert stack["sweeper"].poll() is None
    assert " ERROR " not in stack["log"].read_text()
