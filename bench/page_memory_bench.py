"""Benchmark P4: server memory per waiting chat page against a bare daphne consumer, same run.

One daphne per mode, the same application and settings (bench/page_memory_app.py: the project
plus a bench-only `/ws/bare/` route, a bare AsyncWebsocketConsumer behind the same Origin check
and cookie login). In each, `--warm` pages connect first (start-up allocations, the first
session taking the one seat), then `--pages` more, as real WebSocket clients: on `/ws/chat/`
every one of them waits in the queue (it got its `queue.status`); on `/ws/bare/` it is accepted.
The figure is daphne's resident memory growth divided by `--pages`; the goal is chat <= 1.2x
bare. Modes alternate between runs (the first daphne of a run must not be the only one to pay
for a cold page cache).

    make bench-page-memory      (PAGES=2000 RUNS=3)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from _setup import setup_django  # bench/ is on sys.path when a benchmark runs

TMP = Path(tempfile.mkdtemp(prefix="page-memory-"))
setup_django(database=TMP / "bench.sqlite3")

from _pages import make_people, rss_bytes, start_daphne, stop  # noqa: E402
from django.core.management import call_command  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402

from sessions_app.gate import services  # noqa: E402
from sessions_app.gate.admission import get_manager  # noqa: E402

PATHS = {"chat": "/ws/chat/", "bare": "/ws/bare/"}
# The registry's ticker freezes a burst's objects every 5 s: measure after it has run.
SETTLE_SECONDS = 12.0


# A page the server closed before it settled (as a real page would, it reconnects), at most
# this many times; the count is printed, since a server refusing pages is a finding too.
RETRIES = 5
retried = 0


async def hold(url: str, origin: str, cookie: str, opened: asyncio.Event, wants_frame: bool):
    global retried
    for attempt in range(RETRIES + 1):
        try:
            async with connect(
                url,
                origin=origin,  # type: ignore[arg-type]
                additional_headers={"Cookie": f"sessionid={cookie}"},
                open_timeout=120,
                ping_interval=None,
                max_queue=None,
            ) as ws:
                if not wants_frame:
                    opened.set()
                async for raw in ws:
                    if json.loads(raw).get("type") == "queue.status":
                        opened.set()
        except (OSError, WebSocketException):
            pass
        if opened.is_set():
            return  # closed after it settled: no longer held (the run's end)
        retried += 1
        await asyncio.sleep(0.5 * (attempt + 1))
    opened.set()  # given up: do not hold the run; `retried` tells


async def connect_all(url: str, origin: str, cookies: list[str], mode: str, tasks: list) -> None:
    for start in range(0, len(cookies), 100):
        events = []
        for cookie in cookies[start : start + 100]:
            event = asyncio.Event()
            events.append(event)
            tasks.append(asyncio.create_task(hold(url, origin, cookie, event, mode == "chat")))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 300)


async def measure(mode: str, warm: list[str], pages: list[str]) -> dict:
    manager = get_manager()
    for key in manager.client.scan_iter(manager.keys.all_pattern()):
        manager.client.delete(key)
    await asyncio.to_thread(
        services.limits_set, actor=None, max_active_sessions=1, disconnect_grace_seconds=3600
    )
    process, port = start_daphne(
        TMP / f"daphne-{mode}.log",
        env={"LOG_LEVEL": "WARNING"},
        app="bench.page_memory_app:application",
    )
    tasks: list[asyncio.Task] = []
    try:
        url, origin = f"ws://127.0.0.1:{port}{PATHS[mode]}", f"http://127.0.0.1:{port}"
        await connect_all(url, origin, warm, mode, tasks)
        await asyncio.sleep(SETTLE_SECONDS)
        before = rss_bytes(process.pid)
        started = time.perf_counter()
        await connect_all(url, origin, pages, mode, tasks)
        connect_s = time.perf_counter() - started
        await asyncio.sleep(SETTLE_SECONDS)
        after = rss_bytes(process.pid)
        return {"mode": mode, "per_page": (after - before) / len(pages), "connect_s": connect_s}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--warm", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    cookies = make_people(args.warm + args.pages)
    warm, pages = cookies[: args.warm], cookies[args.warm :]
    print(f"# {args.pages} pages after {args.warm} warm-up, logs in {TMP}")
    print(f"# load average {os.getloadavg()[0]:.1f}")
    for run in range(args.runs):
        order = ("chat", "bare") if run % 2 == 0 else ("bare", "chat")
        results = {m: asyncio.run(measure(m, warm, pages)) for m in order}
        chat, bare = results["chat"]["per_page"], results["bare"]["per_page"]
        print(
            f"run {run + 1}: chat {chat / 1024:.1f} KiB/page, bare {bare / 1024:.1f} KiB/page, "
            f"ratio {chat / bare:.2f}x (goal <= 1.2x); connect {results['chat']['connect_s']:.0f}"
            f" / {results['bare']['connect_s']:.0f} s; reconnects {retried}; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
