"""Benchmark P3 over several server processes: N waiting pages spread over `--processes` daphnes
(round robin, as a load balancer would), the pages held by `--clients` client processes of their
own so that the measuring side's work is bounded and apart from the controller.

Each round closes the active session (services.session_close, from the controller); P2 is until
the promoted page's `session.activated`, P3 until EVERY waiting page, on every process, holds its
new exact place. Goal (issue 11): P3 p99 <= 1 s at 10,000 waiting over 2 processes.

    make bench-fanout-cluster      (WAITING=10000 PROCESSES=2 ROUNDS=10)

Clock: every process reads time.perf_counter (CLOCK_MONOTONIC, one clock for the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from _setup import setup_django  # bench/ is on sys.path when a benchmark runs

TMP = Path(tempfile.mkdtemp(prefix="fanout-cluster-"))
setup_django(database=TMP / "bench.sqlite3")


from _pages import make_people, start_daphne, stop  # noqa: E402
from django.core.management import call_command  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from sessions_app import notifications  # noqa: E402
from sessions_app.gate import services  # noqa: E402
from sessions_app.gate.admission import get_manager  # noqa: E402


class Page:
    """One person's page: the newest place it was told, and when."""

    __slots__ = ("activated_at", "cookie", "position", "position_at", "session_id", "url")

    def __init__(self, cookie: str, url: str) -> None:
        self.cookie, self.url = cookie, url
        self.session_id = ""
        self.position = -1  # 0 = active, -2 = closed
        self.position_at = self.activated_at = 0.0

    async def run(self, origin: str, ready: asyncio.Event) -> None:
        version = -1
        async with connect(
            self.url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers={"Cookie": f"sessionid={self.cookie}"},
            open_timeout=300,
            ping_interval=None,
            max_queue=None,
        ) as ws:
            async for raw in ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                kind = frame["type"]
                if kind == "queue.status" and frame["version"] >= version:
                    version = frame["version"]
                    self.session_id = frame["session_id"]
                    self.position = frame["position"] if frame["state"] == "queued" else 0
                    self.position_at = now
                    ready.set()
                elif kind == "session.activated":
                    self.activated_at = now
                    self.position = 0
                elif kind == "session.closed":
                    self.position = -2
                    return


async def client_main(conn: Connection, cookies: list[str], urls: list[str], origin: str) -> None:
    """One client process: holds its pages and answers the controller's commands."""
    pages = [Page(c, urls[i % len(urls)]) for i, c in enumerate(cookies)]
    tasks = []
    for start in range(0, len(pages), 50):  # a few at a time, as people arrive
        events = []
        for page in pages[start : start + 50]:
            events.append(event := asyncio.Event())
            tasks.append(asyncio.create_task(page.run(origin, event)))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 300)
    expected: dict[int, int] = {}
    head: Page | None = None
    conn.send("connected")
    while True:
        command, arg = await asyncio.to_thread(conn.recv)
        if command == "active":
            conn.send([p.session_id for p in pages if p.position == 0])
        elif command == "snapshot":  # before a close: where everyone must end up
            expected = {i: p.position - 1 for i, p in enumerate(pages) if p.position > 1}
            head = next((p for p in pages if p.position == 1), None)
            if head is not None:
                head.activated_at = 0.0
            conn.send("ok")
        elif command == "wait":  # arg = (t0, deadline): until every page here is exact
            t0, deadline = arg
            while time.perf_counter() < deadline:
                if (head is None or head.activated_at) and all(
                    pages[i].position == want for i, want in expected.items()
                ):
                    break
                await asyncio.sleep(0.005)
            stale = sum(pages[i].position != want for i, want in expected.items())
            last = max((pages[i].position_at for i in expected), default=t0)
            activated = head.activated_at - t0 if head is not None and head.activated_at else None
            conn.send((last - t0, activated, stale))
        elif command == "stop":
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def client_process(conn: Connection, cookies: list[str], urls: list[str], origin: str) -> None:
    asyncio.run(client_main(conn, cookies, urls, origin))


def ask(conns: list[Connection], command: str, arg: object = None) -> list:
    for conn in conns:
        conn.send((command, arg))
    return [conn.recv() for conn in conns]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def server_side(processes: int) -> str:
    """From the daphnes' debug logs: how long a big fan-out round took to write, per process
    (the rest of P3 is the clients reading and the machine's other work)."""
    totals = []
    for i in range(processes):
        for line in (TMP / f"daphne-{i}.log").read_text(errors="replace").splitlines():
            match = re.search(r"fan-out: \d+ queued, (\d+) frames.*total ([\d.]+) ms", line)
            if match and int(match.group(1)) >= 1000:
                totals.append(float(match.group(2)))
    return (
        f"all frames of a round written: p50={pct(totals, 50):.0f} max={max(totals or [0]):.0f} ms"
        f" ({len(totals)} rounds of >= 1,000 frames over {processes} processes)"
    )


def run(args: argparse.Namespace, cookies: list[str]) -> None:
    manager = get_manager()
    for key in manager.client.scan_iter(manager.keys.all_pattern()):
        manager.client.delete(key)
    services.limits_set(actor=None, max_active_sessions=1, disconnect_grace_seconds=3600)
    servers = [
        start_daphne(TMP / f"daphne-{i}.log", env={"LOG_LEVEL": "DEBUG"})  # fan-out timings
        for i in range(args.processes)
    ]
    urls = [f"ws://127.0.0.1:{port}/ws/chat/" for _, port in servers]
    origin = f"http://127.0.0.1:{servers[0][1]}"
    context = multiprocessing.get_context("spawn")
    conns, clients = [], []
    try:
        started = time.perf_counter()
        # The first person alone, so that it is the one active session.
        for i, part in enumerate(
            [cookies[:1]] + [cookies[1 + k :: args.clients] for k in range(args.clients)]
        ):
            ours, theirs = context.Pipe()
            client = context.Process(target=client_process, args=(theirs, part, urls, origin))
            client.start()
            clients.append(client)
            conns.append(ours)
            if i == 0:
                assert ours.recv() == "connected"
        assert all(conn.recv() == "connected" for conn in conns[1:])
        print(f"# connected in {time.perf_counter() - started:.0f} s", flush=True)
        time.sleep(3.0)
        p2, p3, incomplete = [], [], 0
        for _ in range(args.rounds):
            active = [sid for ids in ask(conns, "active") for sid in ids]
            ask(conns, "snapshot")
            t0 = time.perf_counter()
            services.session_close(session_id=active[0], reason="user")
            answers = ask(conns, "wait", (t0, t0 + args.round_timeout))
            stale = sum(a[2] for a in answers)
            activated = [a[1] for a in answers if a[1] is not None]
            if activated:
                p2.append(activated[0] * 1000)
            if stale:
                incomplete += 1
                print(f"  round incomplete: {stale} pages stale", flush=True)
            else:
                p3.append(max(a[0] for a in answers) * 1000)
            if args.verbose and p3:
                print(f"  round: P3 {p3[-1]:.0f} ms", flush=True)
            time.sleep(1.3)  # past the registry's 1 s coalescing window
        print(
            f"waiting={len(cookies) - 1} processes={args.processes} clients={args.clients}  "
            f"P2 p50={pct(p2, 50):.0f} p99={pct(p2, 99):.0f} ms  |  P3 p50={pct(p3, 50):.0f} "
            f"p99={pct(p3, 99):.0f} max={max(p3 or [0]):.0f} ms (goal p99 <= 1,000)  "
            f"rounds ok={len(p3)} incomplete={incomplete}  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        print(f"# server side, {server_side(args.processes)}", flush=True)
    finally:
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.send(("stop", None))
        for client in clients:
            client.join(30)
            if client.is_alive():
                client.kill()
        for process, _ in servers:
            stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2, help="daphne processes")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--round-timeout", type=float, default=20.0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    cookies = make_people(args.waiting + 1)
    print(f"# logs: {TMP}; load average {os.getloadavg()[0]:.1f}", flush=True)
    run(args, cookies)
    notifications.flush()


if __name__ == "__main__":
    main()
