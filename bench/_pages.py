"""What the page benchmarks share: a real daphne on loopback, logged-in people, and their
session cookies. Import after `_setup.setup_django()` (make_people needs the ORM).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_daphne(
    log: Path,
    *,
    env: dict[str, str] | None = None,
    app: str = "config.asgi:application",
    port: int | None = None,
    fd: int | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """One daphne process serving `app` on 127.0.0.1 (its own port, or the shared listening
    socket `fd` several processes accept from); returns it once it accepts connections."""
    port = port or free_port()
    endpoint = (
        f"tcp:port={port}:interface=127.0.0.1:backlog=4096"
        if fd is None
        else f"fd:domain=INET:fileno={fd}"
    )
    process = subprocess.Popen(
        [
            sys.executable, "-m", "daphne", "-e", endpoint,
            "--websocket-max-message-size", "65536", app,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        pass_fds=() if fd is None else (fd,),
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"daphne exited; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("daphne did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def make_people(count: int, prefix: str = "b") -> list[str]:
    """`count` users with logged-in Django sessions; returns their session cookies."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    User = get_user_model()
    User.objects.bulk_create(
        [User(username=f"{prefix}{i:05d}", password="!") for i in range(count)], batch_size=500
    )
    users = list(User.objects.filter(username__startswith=prefix).order_by("id"))
    rows = []
    keys = []
    expire = timezone.now() + timezone.timedelta(days=1)
    for user in users:
        key = uuid.uuid4().hex
        data = {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: user.get_session_auth_hash(),
        }
        rows.append(
            Session(session_key=key, session_data=SessionStore().encode(data), expire_date=expire)
        )
        keys.append(key)
    Session.objects.bulk_create(rows, batch_size=500)
    return keys
