"""Limits under real concurrency: several OS processes against one real Redis, with the
invariants checked while they run and after every step that follows."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sessions_app.gate.admission import AdmissionManager, get_manager
from tests.live import server_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.concurrency_worker", *args],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 240) -> dict:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def assert_live_invariants(manager: AdmissionManager, max_active: int) -> dict[str, int]:
    k = manager.keys
    pipe = manager.client.pipeline(transaction=True)  # one consistent reading
    pipe.zcard(k.active)
    pipe.zcard(k.queue)
    pipe.zintercard(2, [k.active, k.queue])
    active, queued, both = pipe.execute()
    assert active <= max_active, f"{active} active against a limit of {max_active}"
    assert both == 0, "a session is both active and queued"
    return {"active": active, "queued": queued}


def tickets(manager: AdmissionManager, ids: list[str]) -> list[int]:
    return [manager.session_info(sid).ticket for sid in ids]


def test_2000_opens_from_4_processes_admit_exactly_20_in_ticket_order():
    manager = get_manager()
    manager.set_limits(
        {"max_active_sessions": 20, "disconnect_grace_seconds": 3600, "idle_timeout_seconds": 3600}
    )
    workers = [spawn("open", str(i * 500), "500") for i in range(4)]
    readings = 0
    while any(w.poll() is None for w in workers):
        assert_live_invariants(manager, 20)
        readings += 1
    results = [finish(w) for w in workers]
    assert readings > 0
    assert sum(r["active"] for r in results) == 20
    assert sum(r["queued"] for r in results) == 1980

    counts = assert_live_invariants(manager, 20)
    assert counts == {"active": 20, "queued": 1980}
    queue = manager.queue_order()
    assert [manager.position(sid) for sid in queue[:5]] == [1, 2, 3, 4, 5]
    assert manager.position(queue[-1]) == 1980
    queue_tickets = tickets(manager, queue)
    assert queue_tickets == sorted(queue_tickets)  # FIFO: positions follow arrival tickets
    active_ids = [sid for sid, _ in manager.active_with_activity()]
    # Nobody overtook: the 20 admitted hold the 20 earliest tickets.
    assert max(tickets(manager, active_ids)) < min(queue_tickets)

    for step in range(40):
        head = manager.queue_order(0, 0)[0]
        victim = active_ids[step % len(active_ids)] if step < 20 else None
        if victim is None:
            victim = next(sid for sid, _ in manager.active_with_activity())
        result = manager.close(victim, reason="user")
        assert result.promoted == [head], f"step {step}: promoted out of ticket order"
        counts = assert_live_invariants(manager, 20)
        assert counts == {"active": 20, "queued": 1980 - step - 1}


def test_50_concurrent_opens_by_one_person_make_one_session():
    manager = get_manager()
    workers = [spawn("open_same", "same-person", "25") for _ in range(2)]
    results = [finish(w) for w in workers]
    ids = {sid for r in results for sid in r["ids"]}
    assert sum(r["calls"] for r in results) == 50
    assert len(ids) == 1
    assert manager.stats()["opened"] == 1
    assert manager.session_of_user("same-person") == ids.pop()


class CountingBackend(ThreadingHTTPServer):
    """A real HTTP peer standing in for the GPU server: it counts how many requests it is
    serving at once (overall and per session) and remembers the maximum."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CountingHandler)
        self.lock = threading.Lock()
        self.current = 0
        self.maximum = 0
        self.served = 0
        self.per_session: dict[str, int] = {}
        self.max_per_session = 0


class CountingHandler(BaseHTTPRequestHandler):
    server: CountingBackend

    def do_GET(self) -> None:
        srv = self.server
        session = self.headers.get("X-Session", "")
        with srv.lock:
            srv.current += 1
            srv.maximum = max(srv.maximum, srv.current)
            srv.per_session[session] = srv.per_session.get(session, 0) + 1
            srv.max_per_session = max(srv.max_per_session, srv.per_session[session])
        # A generation takes time: long enough that on a loaded box (CI beside other work) the
        # ten slots are still all busy at once (0.08 s once peaked at 9 under load 7).
        time.sleep(0.25)
        with srv.lock:
            srv.current -= 1
            srv.per_session[session] -= 1
            srv.served += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def counting_backend() -> Iterator[CountingBackend]:
    server = CountingBackend()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_20_sessions_x_5_concurrent_queries_never_exceed_10_generating(counting_backend):
    manager = get_manager()
    manager.set_limits({"max_active_sessions": 20, "max_concurrent_queries": 10})
    sessions = [manager.open(f"chatter{i}", via="api").session_id for i in range(20)]
    assert manager.counts()["active"] == 20
    url = f"http://127.0.0.1:{counting_backend.server_address[1]}/generate"
    workers = [
        spawn("query", url, "5", *sessions[:10]),
        spawn("query", url, "5", *sessions[10:]),
    ]
    while any(w.poll() is None for w in workers):
        assert manager.counts()["in_flight"] <= 10
        time.sleep(0.01)
    results = [finish(w) for w in workers]
    assert sum(r["served"] for r in results) == 100
    assert counting_backend.served == 100
    assert counting_backend.maximum == 10  # the pool was used fully, and never more
    assert counting_backend.max_per_session == 1  # one in flight per session
    assert manager.counts() == {"active": 20, "queued": 0, "in_flight": 0, "waiting_queries": 0}


def test_a_killed_process_gives_its_slots_back_within_the_lease_ttl(monkeypatch):
    # Without a generation cap; with one, a stale lease is held until its cap (a frozen
    # holder may still be generating): tests/test_frozen_holder.py.
    monkeypatch.setenv("GENERATION_MAX_SECONDS", "0")
    manager = get_manager()
    ttl = 2
    manager.set_limits({"max_concurrent_queries": 4, "lease_ttl_seconds": ttl})
    sessions = [manager.open(f"holder{i}", via="api").session_id for i in range(5)]
    worker = spawn("hold", *sessions[:4])
    held = set()
    assert worker.stdout is not None
    while len(held) < 4:
        line = worker.stdout.readline()
        assert line, worker.stderr.read() if worker.stderr else "worker died"
        held.add(json.loads(line)["held"])
    # Renewal keeps live leases alive past one TTL: still all four held, nobody else served.
    time.sleep(ttl * 1.5)
    manager.sweep()
    assert manager.counts()["in_flight"] == 4
    # The late waiter says it polls again within a minute: a freed slot is handed to it.
    late = manager.acquire_slot(sessions[4], waiter_id=f"{sessions[4]}:1", poll_within=60)
    assert late.outcome == "wait"

    worker.kill()  # SIGKILL: no finally blocks, no release
    worker.wait()
    killed_at = manager.server_time()
    while manager.stats().get("leases_reclaimed", 0) < 4:
        manager.sweep()
        assert manager.server_time() - killed_at <= ttl + 0.5, "leases outlived their TTL"
        time.sleep(0.05)
    assert manager.stats()["leases_reclaimed"] == 4
    # The sweep that reclaimed them handed one slot on to the waiting query, at once.
    assert manager.counts()["in_flight"] == 1
    granted = manager.acquire_slot(sessions[4], waiter_id=f"{sessions[4]}:1")
    assert granted.outcome == "granted"
    assert manager.live_leases() == {granted.lease_id}
