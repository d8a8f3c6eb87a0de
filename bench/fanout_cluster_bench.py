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
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from _setup import setup_django  # bench/ is on sys.path when a benchmark runs

TMP = Path(tempfile.mkdtemp(prefix="fanout-cluster-"))
setup_django(database=TMP / "bench.sqlite3")


from _lean_ws import LeanSocket, lean_connect  # noqa: E402
from _pages import make_people, start_daphne, stop  # noqa: E402
from django.core.management import call_command  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from sessions_app import notifications  # noqa: E402
from sessions_app.gate import services  # noqa: E402
from sessions_app.gate.admission import get_manager  # noqa: E402


class Tracker:
    """One client process's count of pages not yet at their expected place, kept as frames
    arrive (a scan of every page every few ms would cost the measuring side a core share)."""

    def __init__(self) -> None:
        self.pending = 0
        self.done = asyncio.Event()
        self.done_at = 0.0


class Page:
    """One person's page: the newest place it was told, and when."""

    __slots__ = (
        "activated_at", "cookie", "position", "position_at", "session_id", "tracker", "url",
        "version", "want",
    )  # fmt: skip

    def __init__(self, cookie: str, url: str, tracker: Tracker) -> None:
        self.cookie, self.url, self.tracker = cookie, url, tracker
        self.session_id = ""
        self.position = -1  # 0 = active, -2 = closed
        self.position_at = self.activated_at = 0.0
        self.version = -1
        self.want: int | None = None  # the place this round must end at (None: not watched)

    def _set(self, position: int, now: float) -> None:
        if self.want is not None and (self.position == self.want) != (position == self.want):
            tracker = self.tracker
            tracker.pending += 1 if self.position == self.want else -1
            if tracker.pending == 0:
                tracker.done_at = now
                tracker.done.set()
        self.position = position
        self.position_at = now

    def on_text(self, raw: str, ready: asyncio.Event | None = None) -> bool:
        """Handles one server frame; True when the socket is to end (session closed)."""
        now = time.perf_counter()
        frame = json.loads(raw)
        kind = frame["type"]
        if kind == "queue.status" and frame["version"] >= self.version:
            self.version = frame["version"]
            self.session_id = frame["session_id"]
            self._set(frame["position"] if frame["state"] == "queued" else 0, now)
            if ready is not None:
                ready.set()
        elif kind == "session.activated":
            self.activated_at = now
            self._set(0, now)
        elif kind == "session.closed":
            self._set(-2, now)
            return True
        return False

    async def run(self, kind: str, origin: str, ready: asyncio.Event) -> None:
        if kind == "lean":
            sock: LeanSocket | None = None

            def on_text(raw: str) -> None:
                if self.on_text(raw, ready) and sock is not None and sock.transport is not None:
                    sock.transport.close()  # session closed: the page leaves

            sock = await lean_connect(self.url, origin=origin, cookie=self.cookie, on_text=on_text)
            try:
                await asyncio.shield(sock.closed)
            finally:
                if sock.transport is not None:
                    sock.transport.close()
            return
        async with connect(
            self.url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers={"Cookie": f"sessionid={self.cookie}"},
            open_timeout=300,
            ping_interval=None,
            max_queue=None,
        ) as ws:
            async for raw in ws:
                if self.on_text(raw, ready):  # type: ignore[arg-type]
                    return


async def client_main(
    conn: Connection, cookies: list[str], urls: list[str], origin: str, kind: str
) -> None:
    """One client process: holds its pages and answers the controller's commands."""
    tracker = Tracker()
    pages = [Page(c, urls[i % len(urls)], tracker) for i, c in enumerate(cookies)]
    tasks = []
    for start in range(0, len(pages), 50):  # a few at a time, as people arrive
        events = []
        for page in pages[start : start + 50]:
            events.append(event := asyncio.Event())
            tasks.append(asyncio.create_task(page.run(kind, origin, event)))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 300)
    head: Page | None = None
    watched: list[Page] = []
    conn.send("connected")
    while True:
        command, arg = await asyncio.to_thread(conn.recv)
        if command == "active":
            conn.send([p.session_id for p in pages if p.position == 0])
        elif command == "snapshot":  # before a close: where everyone must end up
            for page in watched:
                page.want = None
            watched = [p for p in pages if p.position > 1]
            for page in watched:
                page.want = page.position - 1
            tracker.pending = len(watched)
            tracker.done.clear()
            tracker.done_at = 0.0
            head = next((p for p in pages if p.position == 1), None)
            if head is not None:
                head.activated_at = 0.0
            conn.send("ok")
        elif command == "wait":  # arg = (t0, deadline): until every page here is exact
            t0, deadline = arg
            if tracker.pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tracker.done.wait(), deadline - time.perf_counter())
            while head is not None and not head.activated_at and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
            stale = tracker.pending
            last = tracker.done_at if watched and not stale else t0
            activated = head.activated_at - t0 if head is not None and head.activated_at else None
            conn.send((last - t0, activated, stale))
        elif command == "stop":
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def client_process(
    conn: Connection, cookies: list[str], urls: list[str], origin: str, kind: str
) -> None:
    asyncio.run(client_main(conn, cookies, urls, origin, kind))


def ask(conns: list[Connection], command: str, arg: object = None) -> list:
    for conn in conns:
        conn.send((command, arg))
    return [conn.recv() for conn in conns]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def server_side(logs: list[Path]) -> str:
    """From the daphnes' debug logs: how long a big fan-out round took to write, per process
    (the rest of P3 is the clients reading and the machine's other work)."""
    totals = []
    full_gcs = 0
    for log in logs:
        # Each record is printed twice (daphne's handler and the project's): one per time.
        seen: set[str] = set()
        counts = []
        for line in log.read_text(errors="replace").splitlines():
            match = re.search(
                r"fan-out: \d+ queued, (\d+) frames.*total ([\d.]+) ms; full gc so far (\d+)",
                line,
            )
            if match and int(match.group(1)) >= 1000 and line[:23] not in seen:
                seen.add(line[:23])
                totals.append(float(match.group(2)))
                counts.append(int(match.group(3)))
        full_gcs += counts[-1] - counts[0] if counts else 0
    return (
        f"all frames of a round written: p50={pct(totals, 50):.0f} max={max(totals or [0]):.0f} ms"
        f" ({len(totals)} rounds of >= 1,000 frames over {len(logs)} processes); full gc "
        f"collections between the first and last round: {full_gcs}"
    )


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def redis_cpu() -> float:
    info = get_manager().client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_snapshot(servers: list[int], clients: list[int]) -> list[float]:
    return [*(cpu_seconds(p) for p in servers), *(cpu_seconds(p) for p in clients), redis_cpu()]


def profile(pids: list[int], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy (`uv pip install py-spy`, not in the lock) on each daphne: only the GIL holder's
    stacks, so the shares say where the process's CPU went."""
    out.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    spies = []
    for pid in pids:
        command = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds))]
        command += ["--rate", "200", "--gil", "--format", "raw"]
        command += ["--output", str(out / f"daphne-{pid}.txt")]
        spies.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    return spies


def run(args: argparse.Namespace, cookies: list[str], phase: str) -> None:
    """One phase: fresh gate, fresh daphnes, all pages held by `kind` clients, the rounds.
    `kind+plainwrites`: the daphnes run without sessions_app/eager_writes.py (the baseline)."""
    kind, _, variant = phase.partition("+")
    server_env = {"LOG_LEVEL": "DEBUG"}  # fan-out timings
    if variant == "plainwrites":
        server_env["CHATGATE_EAGER_WRITES"] = "0"
    manager = get_manager()
    for key in manager.client.scan_iter(manager.keys.all_pattern()):
        manager.client.delete(key)
    services.limits_set(actor=None, max_active_sessions=1, disconnect_grace_seconds=3600)
    logs = [TMP / f"daphne-{phase}-{i}.log" for i in range(args.processes)]
    servers = [start_daphne(log, env=server_env) for log in logs]
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
            client = context.Process(target=client_process, args=(theirs, part, urls, origin, kind))
            client.start()
            clients.append(client)
            conns.append(ours)
            if i == 0:
                assert ours.recv() == "connected"
        assert all(conn.recv() == "connected" for conn in conns[1:])
        print(f"# {phase}: connected in {time.perf_counter() - started:.0f} s", flush=True)
        time.sleep(3.0)
        server_pids = [p.pid for p, _ in servers]
        client_pids = [c.pid for c in clients[1:] if c.pid is not None]
        spies = profile(server_pids, args.rounds * 3, args.profile) if args.profile else []
        p2, p3, incomplete = [], [], 0
        cpu: list[list[float]] = []
        for r in range(args.rounds):
            active = [sid for ids in ask(conns, "active") for sid in ids]
            ask(conns, "snapshot")
            before = cpu_snapshot(server_pids, client_pids)
            t0 = time.perf_counter()
            services.session_close(session_id=active[0], reason="user")
            answers = ask(conns, "wait", (t0, t0 + args.round_timeout))
            after = cpu_snapshot(server_pids, client_pids)
            cpu.append([b - a for a, b in zip(before, after, strict=True)])
            stale = sum(a[2] for a in answers)
            activated = [a[1] for a in answers if a[1] is not None]
            if activated:
                p2.append(activated[0] * 1000)
            if stale:
                incomplete += 1
                print(f"  round {r + 1} incomplete: {stale} pages stale", flush=True)
            else:
                p3.append(max(a[0] for a in answers) * 1000)
            if args.verbose:
                split = " ".join(f"{c:.2f}" for c in cpu[-1])
                last = p3[-1] if p3 else 0
                print(f"  round {r + 1}: P3 {last:.0f} ms; CPU s {split}", flush=True)
            time.sleep(1.3)  # past the registry's 1 s coalescing window
        for spy in spies:
            spy.wait()
        print(
            f"{phase}: waiting={len(cookies) - 1} processes={args.processes} "
            f"clients={args.clients}  "
            f"P2 p50={pct(p2, 50):.0f} p99={pct(p2, 99):.0f} ms  |  P3 p50={pct(p3, 50):.0f} "
            f"p99={pct(p3, 99):.0f} max={max(p3 or [0]):.0f} ms (goal p99 <= 1,000)  "
            f"rounds ok={len(p3)} incomplete={incomplete}  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        n = len(server_pids)
        med = [pct([row[i] for row in cpu], 50) for i in range(len(cpu[0]))] if cpu else []
        if med:
            print(
                f"# {phase}: CPU s per round (median): daphnes "
                f"{' + '.join(f'{c:.2f}' for c in med[:n])}, clients "
                f"{' + '.join(f'{c:.2f}' for c in med[n:-1])}, redis {med[-1]:.2f}",
                flush=True,
            )
        print(f"# {phase}: server side, {server_side(logs)}", flush=True)
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
    parser.add_argument(
        "--client",
        default="lean",
        help="phases, in order, comma-separated, each with a fresh gate and fresh daphnes: the "
        "page client, lean (bench/_lean_ws.py) or websockets, with +plainwrites for daphnes "
        "without sessions_app/eager_writes.py (e.g. lean,lean+plainwrites,websockets)",
    )
    parser.add_argument("--profile", type=Path, help="py-spy each daphne over the rounds into DIR")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    cookies = make_people(args.waiting + 1)
    print(f"# logs: {TMP}; load average {os.getloadavg()[0]:.1f}", flush=True)
    phases = args.client.split(",")
    for phase in phases:
        kind, _, variant = phase.partition("+")
        if kind not in ("lean", "websockets") or variant not in ("", "plainwrites"):
            parser.error(f"unknown phase {phase!r}")
    for phase in phases:
        run(args, cookies, phase)
    notifications.flush()


if __name__ == "__main__":
    main()
