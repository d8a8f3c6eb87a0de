"""Benchmark P6/P7: generation slot handoff and throughput with 10 slots and a model server of
fixed latency, against the same run with the old behaviour (no push, a new HTTP client per
answer) and against clients talking to the model server directly (the ideal).

    make bench-handoff     (60 s, 2 s answers; or: python -m sessions_app.devredis --
                            python bench/handoff_bench.py --seconds 60 --latency 2)

The model server is a real OpenAI-compatible streaming server on loopback (server-sent
events, like the tests' fake): every answer takes --latency seconds, in --chunks pieces. It runs
in a process of its own, as a model server does (in the gate's process its ten threads shared
the gate's interpreter lock and started a thread per answer; --model-server thread measures that).
More people ask than there are slots, each asking again as soon as answered, so a slot is
always wanted. Through the gate each answer is: generation_slot (the real Lua scripts on a
real Redis) around OpenAIBackend.stream.

P6 handoff: an answer ends (its last piece arrived and its slot was given back) -> the next
waiting question's first piece arrives; paired in order (the i-th end with the (i+slots)-th
start), steady state only. Goal p99 <= 50 ms. The direct clients' line is the same measure
without a gate (an answer ends -> that client's next answer's first piece): what the model
server and the HTTP client take by themselves, in the same run.
P7 answers completed in --seconds, against slots x seconds / latency. Goal >= 95%.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _setup import setup_django  # bench/ is on sys.path when a benchmark runs

setup_django()

import httpx  # noqa: E402

from sessions_app import gctune  # noqa: E402
from sessions_app.chat import generation, handoff  # noqa: E402
from sessions_app.chat.backends import openai as openai_backend  # noqa: E402
from sessions_app.chat.backends.base import ChatTurn, StreamEnd  # noqa: E402
from sessions_app.gate.admission import get_manager  # noqa: E402

SLOTS = 10


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: ten connections at once (a burst of handoffs)
    # overflowed it and the last ones waited a second for the SYN to be sent again. Model
    # servers listen with a long backlog (uvicorn 2048, Go the system's maximum).
    request_queue_size = 2048
    latency = 1.0
    chunks = 10


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer
    protocol_version = "HTTP/1.1"  # keep-alive, as vLLM and Ollama do
    # TCP_NODELAY, as uvicorn (vLLM) and Go (Ollama) set it. With Nagle's algorithm on, a small
    # write behind an unacknowledged one (the first piece behind the headers, the body's end
    # behind [DONE]) waited for the client's delayed ACK: 40 ms on a reused connection.
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        # The clients hang up when a mode ends: not worth a traceback.
        try:
            super().handle_one_request()
        except ConnectionError:
            self.close_connection = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # The first piece at once (a handoff is measured to it), the last one `latency` later.
        pause = self.server.latency / max(1, self.server.chunks - 1)
        for i in range(self.server.chunks):
            if i:
                time.sleep(pause)
            chunk = {"choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}
            self._write(f"data: {json.dumps(chunk)}\n\n".encode())
        self._write(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


OLD_CLIENTS: list[httpx.AsyncClient] = []


def old_client() -> httpx.AsyncClient:
    """The old mode's HTTP client: a new one per answer."""
    OLD_CLIENTS.append(httpx.AsyncClient())
    return OLD_CLIENTS[-1]


async def poll_only(self: Any, timeout: float, *, waiter_id: str, hold: float = 0.0) -> None:
    """The old mode's waiters: no push, only the poll (every 25-50 ms, as when no push is heard)."""
    await asyncio.sleep(timeout)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run_mode(mode: str, base_url: str, people: int, seconds: float) -> dict[str, Any]:
    manager = get_manager()
    for key in manager.client.scan_iter(manager.keys.all_pattern()):
        manager.client.delete(key)
    manager.set_limits({"max_active_sessions": people, "max_concurrent_queries": SLOTS})
    sessions = [manager.open(f"p{i}-{mode}").session_id for i in range(people)]
    backend = openai_backend.OpenAIBackend(base_url=base_url, model="m")
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds
    starts: list[float] = []  # first piece of an answer arrived
    ends: list[float] = []  # an answer ended (through the gate: and its slot was given back)
    completed = 0

    async def answer() -> None:
        first = True
        async for _ in backend.stream([ChatTurn("user", "hi")], StreamEnd()):
            if first:
                starts.append(loop.time())
                first = False

    async def ask_again_and_again(sid: str | None) -> None:
        """Asks again as soon as answered: through the gate for a session, else directly."""
        nonlocal completed
        while loop.time() < stop_at:
            if sid is None:
                await answer()
            else:
                async with generation.generation_slot(session_id=sid, timeout=120):
                    await answer()
            ends.append(loop.time())
            if ends[-1] <= stop_at:
                completed += 1

    askers = [None] * SLOTS if mode == "direct" else sessions
    await asyncio.gather(*(ask_again_and_again(sid) for sid in askers))
    # Steady state: the i-th end frees the slot the (i + SLOTS)-th start takes.
    gaps = [
        (starts[i + SLOTS] - ends[i]) * 1000
        for i in range(len(ends))
        if i + SLOTS < len(starts) and starts[i + SLOTS] >= ends[i]
    ]
    # The old mode's clients, closed now rather than by a garbage collection in the next mode
    # (each held a connection, and a thread of the model server, open).
    while OLD_CLIENTS:
        await OLD_CLIENTS.pop().aclose()
    return {"completed": completed, "gaps": gaps}


def _model_server(latency: float, chunks: int) -> ModelServer:
    """A model server on a free loopback port, serving from a thread of this process."""
    server = ModelServer(("127.0.0.1", 0), _Handler)
    server.latency, server.chunks = latency, chunks
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve_model(latency: float, chunks: int) -> None:
    """The model server's own process: prints its port, serves until stdin closes."""
    # This module loaded Django, which a model server does not carry: freeze it, or each full
    # collection walks all of it while answers wait for their first pieces.
    gc.collect()
    gc.freeze()
    server = _model_server(latency, chunks)
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # the benchmark ended (or died): so do we
    server.shutdown()


def start_model_server(args: argparse.Namespace) -> tuple[str, Callable[[], None]]:
    """(base URL, a stop function) for the model server, in its own process or a thread."""
    if args.model_server == "thread":
        server = _model_server(args.latency, args.chunks)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", server.shutdown
    command = [sys.executable, __file__, "--serve-model"]
    command += ["--latency", str(args.latency), "--chunks", str(args.chunks)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline())

    def stop() -> None:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)

    return f"http://127.0.0.1:{port}/v1", stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds per answer")
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--people", type=int, default=30, help="sessions asking (> slots)")
    parser.add_argument("--modes", default="direct,old,new")
    parser.add_argument("--model-server", choices=["process", "thread"], default="process")
    parser.add_argument("--serve-model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_model:
        serve_model(args.latency, args.chunks)
        return

    print(f"{SLOTS} slots, {args.people} people, answers of {args.latency} s, {args.seconds} s")
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average, {os.cpu_count()} cores)", flush=True)
    modes = args.modes.split(",")
    if len(modes) > 1:
        # One process (and model server) per mode, one after the other: a mode must not inherit
        # another's garbage, threads and connections. Measured right after the old mode (its
        # hundreds of HTTP clients), the new mode's p99 was 51-72 ms in 3 of 5 runs.
        for mode in modes:
            child = [sys.executable, __file__, *sys.argv[1:], "--modes", mode]
            done = subprocess.run(child, capture_output=True, text=True)
            print("".join(x for x in done.stdout.splitlines(True) if x.startswith("  ")), end="")
            if done.returncode:
                sys.exit(f"the {mode} mode failed:\n{done.stderr}")
        return
    base_url, stop_model_server = start_model_server(args)
    gctune.after_startup()  # as config/asgi.py does in every daphne
    ideal = SLOTS * int(args.seconds / args.latency)
    (mode,) = modes  # one mode per process (above): nothing to put back afterwards
    if mode == "old":
        # As before issue 11: a new HTTP client per answer, and waiters hear of a freed slot
        # only by polling (every 25-50 ms).
        openai_backend.shared_client = old_client  # type: ignore[assignment]
        handoff.SlotWakeups.wait = poll_only  # type: ignore[method-assign]
        handoff.SlotWakeups.listening = property(lambda self: False)  # type: ignore[method-assign, assignment]
    result = asyncio.run(run_mode(mode, base_url, args.people, args.seconds))
    gaps = result["gaps"]
    share = result["completed"] / ideal
    line = f"  {mode:<7} completed {result['completed']:>4} / ideal {ideal} = {share:6.1%}"
    if gaps:
        line += (
            f"   handoff ms p50 {statistics.median(gaps):6.1f}"
            f"  p99 {pct(gaps, 0.99):6.1f}  (n={len(gaps)})"
        )
    print(line, flush=True)
    stop_model_server()


if __name__ == "__main__":
    main()
