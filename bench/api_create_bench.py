"""Benchmark P9 (issue 11): API creates per second over 2 real daphne processes, against the
service layer in one process and the bare open script, measured in the same run.

    make bench-api     (a throwaway Redis; CREATES=3000 WORKERS=2 CONNECTIONS=32 ROUNDS=3)
    .venv/bin/python -m sessions_app.devredis -- .venv/bin/python bench/api_create_bench.py \
        [--creates N] [--workers 2] [--connections 32] [--close] [--profile DIR]

Each round, on a fresh gate (limits as shipped: 20 active, the rest queue):
- bare: the open script through redis-py, N distinct people (no SQL, no Django);
- services: `services.session_open` for N distinct existing people, one process, one thread;
- api: N `POST /api/v1/session/create {"user_id": ...}` with one gateway token (act for users),
  distinct existing people, spread over WORKERS daphne processes sharing one port with
  SO_REUSEPORT exactly as `WORKERS=N make run` serves (sessions_app/devrun.py). The client is a
  raw asyncio HTTP/1.1 client in a process of its own; by default each of CONNECTIONS
  connections is kept alive and sends its next create when the previous one is answered (a
  gateway's connection pool); `--close` opens one connection per create instead.

The SQL record is written from the session journal by a writer in a process of its own
(bench/journal_writer.py), as the sweeper does beside `make run` (JOURNAL_FLUSH=background);
the test settings the benchmark borrows would otherwise write it inside every request.

Printed per round: rates, the API/services ratio, the load average, and the CPU seconds per
create spent by the daphne processes, the client and Redis, so that the limiting party shows.
`--profile DIR` records each daphne with py-spy during the first round's API phase (collapsed
stacks, `DIR/daphne-<pid>.txt`; `pip install py-spy` first; `--gil`: only the thread holding
the GIL is sampled, so the shares are where the CPU goes, not where threads wait) and prints
the top frames' shares.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TIME_BOUND = 120.0  # seconds: a round's API phase stops sending after this, whatever is left


# --- the client (runs in its own process: `api_create_bench.py client ...`) -------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: (status, body, server keeps the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(p[:-2] for p in parts)
    else:
        body = await reader.read()
    keep = headers.get("connection", "").lower() != "close"
    return status, body, keep


def _request(port: int, token: str, user: str, keep_alive: bool) -> bytes:
    payload = json.dumps({"user_id": user}).encode()
    head = (
        "POST /api/v1/session/create HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + payload


async def _client(
    port: int, token: str, users: list[str], connections: int, keep_alive: bool
) -> dict[str, Any]:
    todo = iter(users)
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    reconnects = 0

    async def one_connection() -> None:
        nonlocal reconnects
        reader = writer = None
        for user in todo:
            if loop.time() - started > TIME_BOUND:
                return
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            sent = loop.time()
            writer.write(_request(port, token, user, keep_alive))
            status, body, keep = await _read_response(reader)
            latencies.append(loop.time() - sent)
            statuses[status] += 1
            if status >= 400:
                codes[json.loads(body).get("error", {}).get("code", "?")] += 1
            if not (keep and keep_alive):
                writer.close()
                reader = writer = None
                reconnects += 1
        if writer is not None:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = loop.time() - started
    latencies.sort()
    done = len(latencies)
    return {
        "done": done,
        "seconds": elapsed,
        "rate": done / elapsed if elapsed else 0.0,
        "statuses": dict(statuses),
        "codes": dict(codes),
        "p50_ms": latencies[done // 2] * 1000 if done else None,
        "p99_ms": latencies[min(done - 1, done * 99 // 100)] * 1000 if done else None,
        "connections_opened": reconnects if not keep_alive else connections,
        "client_cpu": time.process_time(),
    }


def client_main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    result = asyncio.run(
        _client(spec["port"], spec["token"], spec["users"], spec["connections"], spec["keep_alive"])
    )
    print(json.dumps(result))


# --- the driver ---------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process, from /proc: system time is where thread
    hand-offs (futex wake-ups, the event loop's self-pipe, epoll) show."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _listener(port: int) -> socket.socket:
    from sessions_app.devrun import port_listener

    return port_listener("127.0.0.1", port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_servers(workers: int, env: dict[str, str]) -> tuple[int, list[subprocess.Popen[bytes]]]:
    """WORKERS daphne processes on one port, as `WORKERS=N make run` starts them."""
    from sessions_app.devrun import daphne_command

    port = _free_port()
    processes = []
    for index in range(workers):
        listener = _listener(port)
        fd = listener.fileno()
        log = open(f"/tmp/chatgate-bench-api-daphne{index}.log", "wb")  # noqa: SIM115
        processes.append(
            subprocess.Popen(
                daphne_command(sys.executable, f"fd:fileno={fd}"),
                env=env,
                pass_fds=(fd,),
                cwd=HERE.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        listener.close()
    # Ready when every process answers: each has its own socket, so probe until both did.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise SystemExit("a daphne process exited at start; see /tmp/chatgate-bench-api-*")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1"):
                    break
        except OSError:
            time.sleep(0.2)
    time.sleep(2.0)  # both imported Django; the first requests of each must not pay for it
    return port, processes


def _profile(pids: list[int], seconds: int, out: Path) -> list[subprocess.Popen[bytes]]:
    out.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    spies = []
    for pid in pids:
        command = [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "250",
            "--gil",
        ]
        command += ["--format", "raw", "--output", str(out / f"daphne-{pid}.txt")]
        spies.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    return spies


def _shares(path: Path, top: int = 25) -> None:
    """Prints the share of samples in which each of our or Django's frames appears (inclusive)."""
    total = 0
    inclusive: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            function, _, where = frame.partition(" (")
            name = f"{function} ({where.split(':')[0].rsplit('/', 1)[-1]})"
            if name not in seen:
                seen.add(name)
                inclusive[name] += n
    print(f"    {path.name}: {total} samples; inclusive shares")
    for name, n in inclusive.most_common(top):
        print(f"      {n / total:6.1%}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=int(os.environ.get("CREATES", "3000")))
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", "3")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    parser.add_argument("--connections", type=int, default=int(os.environ.get("CONNECTIONS", "32")))
    parser.add_argument("--close", action="store_true", help="one connection per create")
    parser.add_argument("--profile", type=Path, help="py-spy each daphne in round 1 into DIR")
    args = parser.parse_args()

    database = Path(os.environ.get("BENCH_DB", "/tmp/chatgate-bench-api.sqlite3"))
    for leftover in database.parent.glob(database.name + "*"):
        leftover.unlink()
    sys.path.insert(0, str(HERE))
    # As a server runs; the test settings (CHATGATE_TESTING) would write the record inline,
    # inside every request. The writer below writes it, as the sweeper does in production.
    os.environ.setdefault("JOURNAL_FLUSH", "background")
    import journal_writer
    from _setup import setup_django

    setup_django(database=database)

    from django.contrib.auth.models import User
    from django.core.management import call_command

    from sessions_app.gate import services
    from sessions_app.gate.admission import get_manager
    from sessions_app.models import ApiToken

    call_command("migrate", verbosity=0)
    manager = get_manager()
    client = manager.client
    n, rounds = args.creates, args.rounds
    # Distinct existing people for every phase of every round (a returning person is created
    # once by the gateway and opens many sessions over time; provisioning is not measured).
    names = [f"p{phase}r{r}u{i}" for r in range(rounds) for phase in "sa" for i in range(n)]
    User.objects.bulk_create([User(username=name) for name in names], batch_size=2000)
    people = {u.username: u for u in User.objects.filter(username__startswith="p")}
    owner = User.objects.create_user("gateway")
    _row, token = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)

    env = dict(
        os.environ,
        # Flood budgets are not under test: a gateway's 600 a minute would refuse most.
        API_TOKEN_CREATE_RATE_PER_MINUTE="100000000",
        PYTHONUNBUFFERED="1",
    )
    port, servers = _start_servers(args.workers, env)
    writer = journal_writer.start(env)
    keep_alive = not args.close
    print(
        f"chatgate P9 benchmark: {n} creates per round, {rounds} rounds, {args.workers} daphne "
        f"processes, {args.connections} client connections "
        f"({'keep-alive' if keep_alive else 'one connection per create'})"
    )

    def fresh_gate() -> None:
        for key in client.scan_iter(match=manager.keys.all_pattern(), count=1000):
            client.delete(key)
        manager.set_limits({"max_active_sessions": 20})

    def redis_cpu() -> float:
        info: Any = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    try:
        for r in range(rounds):
            fresh_gate()
            open_script, keys = manager._scripts["open"], manager._script_keys
            tagged = manager.keys.tagged
            started = time.perf_counter()
            for i in range(n):
                open_script(
                    keys=keys,
                    args=[tagged, "", f"bare{r}-{i}", "normal", str(uuid.uuid4()), "api", ""],
                )
            bare = n / (time.perf_counter() - started)

            fresh_gate()
            started = time.perf_counter()
            for i in range(n):
                services.session_open(user=people[f"psr{r}u{i}"], via="api")
            service_rate = n / (time.perf_counter() - started)

            fresh_gate()
            load_before = _loadavg()
            spec = {
                "port": port,
                "token": token,
                "users": [f"par{r}u{i}" for i in range(n)],
                "connections": args.connections,
                "keep_alive": keep_alive,
            }
            cpu_before = [_cpu_seconds(p.pid) for p in servers]
            redis_before = redis_cpu()
            spies = []
            if args.profile and r == 0:
                expected = max(5, int(n / max(service_rate / 4, 20)))
                spies = _profile([p.pid for p in servers], min(expected, 60), args.profile)
            out = subprocess.run(
                [sys.executable, __file__, "client", json.dumps(spec)],
                capture_output=True,
                check=True,
                text=True,
            ).stdout
            result = json.loads(out)
            server_cpu = [
                (after[0] - before[0], after[1] - before[1])
                for after, before in zip(
                    [_cpu_seconds(p.pid) for p in servers], cpu_before, strict=True
                )
            ]
            redis_used = redis_cpu() - redis_before
            for spy in spies:
                spy.wait()
            done = result["done"]
            print(f"round {r + 1}: load average {load_before} (before the API phase)")
            print(f"  bare open script (redis-py, 1 process)        {bare:>8,.0f} /s")
            print(f"  services.session_open (1 process)             {service_rate:>8,.0f} /s")
            print(
                f"  API creates over {args.workers} processes                  "
                f"{result['rate']:>8,.0f} /s   ({done} in {result['seconds']:.1f} s, "
                f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
                f"statuses {result['statuses']} {result['codes'] or ''})"
            )
            print(
                f"  API / services {result['rate'] / service_rate:5.2f}x   "
                f"API / bare {result['rate'] / bare:5.2f}x   (goal: API >= 500/s)"
            )
            per = [
                f"{1000 * (u + k) / max(done, 1):.2f} ({1000 * k / max(done, 1):.2f} system)"
                for u, k in server_cpu
            ]
            print(
                f"  CPU ms per create: daphne {' + '.join(per)}, "
                f"client {1000 * result['client_cpu'] / max(done, 1):.2f}, "
                f"redis {1000 * redis_used / max(done, 1):.2f}"
            )
        if args.profile:
            for path in sorted(args.profile.glob("daphne-*.txt")):
                _shares(path)
    finally:
        for process in [*servers, writer]:
            process.terminate()
        for process in [*servers, writer]:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        fresh_gate()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "client":
        client_main(sys.argv[2:])
    else:
        main()
