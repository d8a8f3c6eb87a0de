"""Position fan-out benchmark: N waiting pages (real WebSocket clients) on a real daphne.

Measures, in one run and on the same machine:
  P2  time from one close (services.session_close) to the promoted page's `session.activated`;
  P3  time from that head promotion until EVERY waiting page holds its new exact position;
for the per-process registry (fanout.py, the default) and for a plain per-consumer broadcast
(FANOUT_MODE=plain: every socket is in the queue group and re-reads its own position).

    python -m sessions_app.devredis -- .venv/bin/python bench/fanout_bench.py --waiting 1000

Everything is on loopback; the database is a temporary SQLite file; Redis is the one named by
REDIS_URL (flushed of this run's prefix only). Bounded: `--rounds` closes per mode, each with a
`--round-timeout`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TMP = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
PREFIX = f"bench{uuid.uuid4().hex[:6]}"
os.environ.update(
    DJANGO_SETTINGS_MODULE="config.settings",
    CHATGATE_TESTING="1",
    DATABASE_URL=f"sqlite:///{TMP / 'bench.sqlite3'}",
    CHATGATE_REDIS_PREFIX=PREFIX,
    LOG_LEVEL="WARNING",
)
if "REDIS_URL" not in os.environ:
    raise SystemExit("Run under `python -m sessions_app.devredis -- ...` or set REDIS_URL.")

import django  # noqa: E402

django.setup()

from _pages import make_people, start_daphne  # noqa: E402
from django.core.management import call_command  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from sessions_app import notifications  # noqa: E402
from sessions_app.gate import services  # noqa: E402
from sessions_app.gate.admission import get_manager  # noqa: E402


def start_mode_daphne(mode: str) -> tuple[subprocess.Popen[bytes], int]:
    # "<mode>+nogc": the same without sessions_app/gctune.py (its same-run baseline).
    fanout_mode, _, variant = mode.partition("+")
    env = {
        "FANOUT_MODE": fanout_mode,
        "LOG_LEVEL": "DEBUG",
        "CHATGATE_GC_TUNE": "0" if variant == "nogc" else "1",
    }
    return start_daphne(TMP / f"daphne-{mode}.log", env=env)


class Page:
    """One waiting person's page: keeps the newest position and when it arrived."""

    def __init__(self, cookie: str) -> None:
        self.cookie = cookie
        self.session_id = ""
        self.position = -1
        self.position_at = 0.0
        self.activated_at = 0.0
        self.turn_at = 0.0  # the first frame saying "your turn" (activated or status active)
        self.version = -1
        self.ws = None
        self.frames = 0

    async def run(self, url: str, origin: str, ready: asyncio.Event) -> None:
        async with connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers={"Cookie": f"sessionid={self.cookie}"},
            open_timeout=60,
            ping_interval=None,
            max_queue=None,
        ) as ws:
            self.ws = ws
            async for raw in ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                self.frames += 1
                kind = frame["type"]
                if kind == "queue.status":
                    if frame["version"] < self.version:
                        continue
                    self.version = frame["version"]
                    self.session_id = frame["session_id"]
                    self.position = frame["position"] if frame["state"] == "queued" else 0
                    self.position_at = now
                    if frame["state"] == "active" and not self.turn_at:
                        self.turn_at = now
                    ready.set()
                elif kind == "session.activated":
                    self.activated_at = now
                    self.turn_at = self.turn_at or now
                    self.position = 0
                elif kind == "session.closed":
                    return


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def run_mode(
    mode: str, cookies: list[str], rounds: int, round_timeout: float, verbose: bool = False
) -> dict:
    manager = get_manager()
    for key in manager.client.scan_iter(f"*{PREFIX}*"):
        manager.client.delete(key)
    # One seat, so everyone else waits; a long grace, because the plain broadcast mode has no
    # registry to renew presence and the run must not abandon anyone.
    await asyncio.to_thread(
        services.limits_set, actor=None, max_active_sessions=1, disconnect_grace_seconds=3600
    )
    process, port = start_mode_daphne(mode)
    pages = [Page(c) for c in cookies]
    tasks = []
    try:
        url, origin = f"ws://127.0.0.1:{port}/ws/chat/", f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        # Arrive in order (the first becomes active), a few at a time.
        for start in range(0, len(pages), 50):
            batch = pages[start : start + 50]
            events = [asyncio.Event() for _ in batch]
            for page, event in zip(batch, events, strict=True):
                tasks.append(asyncio.create_task(page.run(url, origin, event)))
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 120)
        connect_seconds = time.perf_counter() - started
        await asyncio.sleep(2.0)
        p2: list[float] = []
        turn: list[float] = []
        p3: list[float] = []
        incomplete = 0
        active = next(p for p in pages if p.position == 0)
        for _ in range(rounds):
            head = next(p for p in pages if p.position == 1)
            waiting = [p for p in pages if p.position > 1]
            expected = {id(p): p.position - 1 for p in waiting}
            head.activated_at = head.turn_at = 0.0
            t0 = time.perf_counter()
            await asyncio.to_thread(
                services.session_close, session_id=active.session_id, reason="user"
            )
            deadline = t0 + round_timeout
            while time.perf_counter() < deadline:
                if head.activated_at and all(p.position == expected[id(p)] for p in waiting):
                    break
                await asyncio.sleep(0.005)
            if head.activated_at:
                p2.append((head.activated_at - t0) * 1000)
                turn.append((head.turn_at - t0) * 1000)
            if verbose:
                last = max(p.position_at for p in waiting)
                print(
                    f"  [{mode}] round: activated {(head.activated_at - t0) * 1000:.1f} ms, "
                    f"all exact {(last - t0) * 1000:.1f} ms"
                )
            if all(p.position == expected[id(p)] for p in waiting):
                p3.append((max(p.position_at for p in waiting) - t0) * 1000)
            else:
                incomplete += 1
                behind = sum(p.position != expected[id(p)] for p in waiting)
                print(f"  [{mode}] round incomplete: {behind} of {len(waiting)} pages stale")
            active.position = -2  # closed
            active = head
            await asyncio.sleep(1.3)  # past the registry's 1 s coalescing window
        return {
            "mode": mode,
            "connect_s": connect_seconds,
            "p2": p2,
            "turn": turn,
            "p3": p3,
            "incomplete": incomplete,
            "frames": sum(p.frames for p in pages),
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def report(result: dict, waiting: int) -> None:
    p2, p3 = result["p2"], result["p3"]
    print(
        f"{result['mode']:>8}  waiting={waiting}  connect={result['connect_s']:.1f}s  "
        f"P2 activated p50={pct(p2, 50):.1f}ms p99={pct(p2, 99):.1f}ms max={max(p2 or [0]):.1f}ms"
        f" (first turn frame p99={pct(result['turn'], 99):.1f}ms)"
        f"  |  P3 all exact p50={pct(p3, 50):.1f}ms p99={pct(p3, 99):.1f}ms "
        f"max={max(p3 or [0]):.1f}ms  rounds ok={len(p3)} incomplete={result['incomplete']}"
        f"  frames={result['frames']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiting", type=int, default=1000, help="people waiting in the queue")
    parser.add_argument("--rounds", type=int, default=15, help="closes measured per mode")
    parser.add_argument("--round-timeout", type=float, default=15.0)
    parser.add_argument("--modes", default="registry,plain")
    parser.add_argument("--verbose", action="store_true", help="print every round")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    cookies = make_people(args.waiting + 1)
    print(f"# logs: {TMP}")
    print(f"# {args.waiting} waiting (+1 active), {args.rounds} head promotions per mode")
    results = []
    for mode in args.modes.split(","):
        result = asyncio.run(run_mode(mode, cookies, args.rounds, args.round_timeout, args.verbose))
        report(result, args.waiting)
        results.append(result)
    notifications.flush()
    if len(results) == 2 and results[0]["p3"] and results[1]["p3"]:
        ratio = pct(results[1]["p3"], 50) / pct(results[0]["p3"], 50)
        print(f"# P3 median: {results[1]['mode']} / {results[0]['mode']} = {ratio:.1f}x")


if __name__ == "__main__":
    main()
