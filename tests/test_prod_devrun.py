"""Issue 11: `WORKERS=N make run` serves N daphne processes behind one port plus one sweeper;
every page, socket and API call works whichever process it lands on; Ctrl-C stops them all.

The supervisor (sessions_app/devrun.py) is started as `make run` starts it, in a process group
of its own, and stopped with SIGINT to that group, as a terminal's Ctrl-C does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model

from sessions_app.models import ApiToken
from tests.live import ROOT, DaphneServer, _free_port, server_env
from tests.test_chat_live import login_cookie, next_of, open_ws

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]
WORKERS = 3
SOCKETS = 24


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of a process's direct children."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except FileNotFoundError:
                continue
            found.append((int(child), cmd))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not serving anything.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[dict[str, object]]:
    port = _free_port()
    log = (tmp_path / "devrun.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "sessions_app.devrun"],
        cwd=ROOT,
        env=server_env(WORKERS=str(WORKERS), PORT=str(port), DEBUG="1"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group, as a terminal gives `make run`
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "devrun.log").read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    state: dict[str, object] = {"process": process, "url": url, "port": port, "dir": tmp_path}
    yield state
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _processes_behind(channels: set[str]) -> set[str]:
    """channels-redis names a socket's channel `specific.<process>!<socket>`."""
    return {name.split("!")[0] for name in channels}


def test_workers_share_one_port_with_one_sweeper_and_ctrl_c_stops_them_all(
    supervisor: dict[str, object],
) -> None:
    process = supervisor["process"]
    assert isinstance(process, subprocess.Popen)
    children = _children(process.pid)
    daphnes = [pid for pid, cmd in children if "daphne" in cmd]
    sweepers = [pid for pid, cmd in children if "sweep_sessions" in cmd]
    assert len(daphnes) == WORKERS and len(sweepers) == 1, children

    server = DaphneServer(str(supervisor["url"]), int(str(supervisor["port"])), process, Path())

    async def many_sockets() -> set[str]:
        cookies = [await sync_to_async(login_cookie)(f"p{i}") for i in range(SOCKETS)]
        sockets = await asyncio.gather(*(open_ws(server, cookie) for cookie in cookies))
        states = [(await next_of(ws, "queue.status"))["state"] for ws in sockets]
        assert states.count("active") == 20 and states.count("queued") == SOCKETS - 20
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        members: set[str] = set()
        for key in client.scan_iter(match=f"{settings.CHATGATE_REDIS_PREFIX}:asgi:group:*"):
            members |= {m.decode() for m in client.zrange(key, 0, -1)}
        for ws in sockets:
            await ws.close()
        return members

    members = asyncio.run(many_sockets())
    behind = _processes_behind({m for m in members if m.startswith("specific.")})
    # The kernel spreads the connections of one port over the processes that accept on it
    # (the fan-out registry of each process adds one more channel, hence "at least").
    print(f"\n{SOCKETS} sockets through one port reached {len(behind)} processes")
    assert len(behind) >= 2

    # The API on the same port, whichever process answers.
    owner = get_user_model().objects.create_user("gateway")
    _row, token = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)
    for i in range(6):
        answer = httpx.post(
            f"{supervisor['url']}/api/v1/session/create",
            content=json.dumps({"user_id": f"api{i}"}),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 201 and answer.json()["status"] == "queued"

    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
    assert process.wait(timeout=60) == 0
    assert not [pid for pid, _ in children if _alive(pid)]
    with socket.socket() as sock:  # nobody listens on the port any more (TIME_WAIT aside)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", int(str(supervisor["port"]))))
        sock.listen(1)
    log = (Path(str(supervisor["dir"])) / "devrun.log").read_text()
    assert "chatgate stopped." in log and f"{WORKERS} daphne processes share the port" in log
