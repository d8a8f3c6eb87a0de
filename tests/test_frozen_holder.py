"""Issue 8, item 9: a frozen slot holder cannot push the model server over its limit.

Two real daphne processes stream answers from a loopback OpenAI-compatible model server that
counts its own concurrent generations. Process A takes both slots (limit 2, lease TTL 2 s) and
is frozen with SIGSTOP for longer than the TTL while its two answers are still being generated;
people on process B ask meanwhile. The model server must never run more than 2 at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from sessions_app.gate.admission import get_manager
from tests.live import start_daphne
from tests.test_chat_live import login_cookie, next_of, open_ws

pytestmark = [pytest.mark.timeout(150)]
CHUNKS, CHUNK_SECONDS = 10, 0.5  # each answer takes 5 s at the model server


class CountingModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.running = 0
        self.maximum = 0
        self.served = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: CountingModelServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.running += 1
            self.server.maximum = max(self.server.maximum, self.server.running)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            # Like a GPU server: the answer is generated whether or not the client reads it.
            for index in range(CHUNKS):
                time.sleep(CHUNK_SECONDS)
                chunk = {"choices": [{"index": 0, "delta": {"content": f" t{index}"}}]}
                try:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                except OSError:
                    return  # the client closed its request: generation aborted
            self.wfile.write(b"data: [DONE]\n\n")
        finally:
            with self.server.lock:
                self.server.running -= 1
                self.server.served += 1


@pytest.fixture
def model_server() -> Iterator[CountingModelServer]:
    server = CountingModelServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_a_frozen_holder_does_not_let_the_model_server_exceed_the_limit(
    transactional_db: None, tmp_path: Path, model_server: CountingModelServer
) -> None:
    env = {
        "CHAT_BACKEND": "openai",
        "OPENAI_BASE_URL": model_server.base_url,
        "GENERATION_MAX_SECONDS": "12",
    }
    frozen = start_daphne(tmp_path, "frozen", **env)
    other = start_daphne(tmp_path, "other", **env)
    stopped = False
    try:
        await sync_to_async(get_manager().set_limits)(
            {"max_concurrent_queries": 2, "lease_ttl_seconds": 2}
        )
        cookies = [await sync_to_async(login_cookie)(f"p{i}") for i in range(4)]
        holders = [await open_ws(frozen, cookie) for cookie in cookies[:2]]
        for ws in holders:
            assert (await next_of(ws, "queue.status"))["state"] == "active"
            await ws.send(json.dumps({"type": "message", "content": "long answer please"}))
        for ws in holders:
            await next_of(ws, "stream_chunk", timeout=15)  # both are generating now

        os.kill(frozen.process.pid, signal.SIGSTOP)
        stopped = True
        frozen_at = time.monotonic()
        waiters = [await open_ws(other, cookie) for cookie in cookies[2:]]
        for ws in waiters:
            assert (await next_of(ws, "queue.status"))["state"] == "active"
            await ws.send(json.dumps({"type": "message", "content": "my turn?"}))
        await asyncio.sleep(6)  # three lease TTLs; the frozen answers are still generating
        os.kill(frozen.process.pid, signal.SIGCONT)
        stopped = False
        thawed_after = time.monotonic() - frozen_at

        ends = [await next_of(ws, "stream_end", timeout=40) for ws in waiters]
        print(
            f"\nfrozen {thawed_after:.1f} s with 2 slots (TTL 2 s); model server at most "
            f"{model_server.maximum} at once, {model_server.served} answers; "
            f"waiters: {[e['status'] for e in ends]}"
        )
        assert model_server.maximum <= 2
        assert [e["status"] for e in ends] == ["done", "done"]
        for ws in holders + waiters:
            await ws.close()
    finally:
        if stopped:
            os.kill(frozen.process.pid, signal.SIGCONT)
        frozen.stop()
        other.stop()


@pytest.mark.django_db
def test_a_generation_is_cut_before_its_hold_ends_and_its_slot_is_held_that_long(
    settings: Any,
) -> None:
    from django.contrib.auth import get_user_model

    from sessions_app.chat import generation
    from sessions_app.gate import services

    settings.CHATGATE = {**settings.CHATGATE, "GENERATION_MAX_SECONDS": 10}
    manager = get_manager()
    manager.set_limits({"max_concurrent_queries": 1, "lease_ttl_seconds": 1})
    user = get_user_model().objects.create_user("long-winded")
    session_id = services.session_open(user=user, via="api").session_id
    seen: dict[str, float] = {}

    async def scenario() -> None:
        async with generation.generation_slot(session_id=session_id, timeout=5) as lease:
            # Held until grant + cap even though the TTL is 1 s (a frozen holder's hold).
            seen["hold"] = float(manager.client.zscore(manager.keys.slots, lease) or 0)
            seen["now"] = manager.server_time()
            await asyncio.sleep(30)  # an answer longer than the cap

    started = time.monotonic()
    with pytest.raises(generation.GenerationCut):
        asyncio.run(scenario())
    elapsed = time.monotonic() - started
    assert seen["hold"] - seen["now"] >= 9.5  # not the 1 s TTL
    assert 8.5 <= elapsed < 10.0  # cut before the hold ends (10 s minus a 1 s margin)
    assert manager.counts()["in_flight"] == 0  # and the slot given back at once
