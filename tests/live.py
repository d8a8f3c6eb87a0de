"""Live servers for end-to-end tests: daphne processes on loopback, and real Chromium.

`daphne_server` starts a real daphne (the same command line as `make run`) against the test
database file and the test Redis; `start_daphne()` starts more (two processes sharing one
Redis). `browser` launches Debian's Chromium through Playwright (never a downloaded browser).
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@dataclass
class DaphneServer:
    url: str  # http://127.0.0.1:PORT
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def errors(self, limit: int = 3) -> list[str]:
        """The most frequent error lines of the log, for an assertion's message: a CI run keeps
        the test's output but not the servers' logs."""
        lines = [ln for ln in self.log().splitlines() if "Error:" in ln or "FATAL" in ln]
        return [f"{n} x {ln[:300]}" for ln, n in collections.Counter(lines).most_common(limit)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (crash tests)."""
        self.process.kill()
        self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_from_a_terminal() -> None:
    """`preexec_fn` for a child a test stops with SIGINT, as Ctrl-C would: a run started in the
    background by a shell without job control (`make test &`) ignores SIGINT, and a child
    inherits that (and a blocked mask), so Python installed no Ctrl-C handler in it and the
    SIGINT did nothing (the child was killed after the test's timeout instead)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def server_env(**extra: str) -> dict[str, str]:
    """Environment for a server or worker process sharing this test run's DB and Redis."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        CHATGATE_TESTING="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        REDIS_URL=os.environ["REDIS_URL"],
        CHATGATE_REDIS_PREFIX=settings.CHATGATE_REDIS_PREFIX,
        SERVE_STATIC="1",
        PYTHONUNBUFFERED="1",
    )
    if db["ENGINE"] == "django.db.backends.sqlite3":
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    elif db["ENGINE"] == "django.db.backends.postgresql":
        # NAME is the test database by now (Django renames it when it creates it): the servers
        # must write where the test reads, not into the database DATABASE_URL names.
        auth = quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = str(db["HOST"] or "")  # empty: the local socket, as in DATABASE_URL
        if host.startswith("/"):
            host = ""  # a socket directory travels as ?host= below
        elif ":" in host:
            host = f"[{host}]"
        port = f":{db['PORT']}" if db["PORT"] else ""
        url = f"postgres://{auth}@{host}{port}/{quote(db['NAME'], safe='')}"
        query = {str(k): str(v) for k, v in (db.get("OPTIONS") or {}).items()}
        if str(db["HOST"] or "").startswith("/"):
            query["host"] = str(db["HOST"])
        env["DATABASE_URL"] = url + (f"?{urlencode(query)}" if query else "")
    env.update(extra)
    return env


def _answers_http(port: int) -> bool:
    """True once an HTTP server answers on the port. A bare connect is not proof: retried for
    long on a loaded box, a connect to a free port in the ephemeral range can connect the
    socket to itself (Linux's simultaneous open), and a test then ran against nobody
    (ERR_CONNECTION_REFUSED on the first page, an empty daphne log)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            if sock.getsockname() == sock.getpeername():
                return False
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


def start_daphne(tmp_path: Path, name: str = "daphne", **extra_env: str) -> DaphneServer:
    port = _free_port()
    log_path = tmp_path / f"{name}-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "daphne",
            "-e", f"tcp:port={port}:interface=127.0.0.1:backlog=2048",
            "--websocket-max-message-size", "65536",
            "config.asgi:application",
        ],
        cwd=ROOT,
        env=server_env(**extra_env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    # 60 s: at load 7 on 2 cores (a CI box running other suites), 30 s was once too short.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited at start:\n{log_path.read_text()}")
        if _answers_http(port):
            return DaphneServer(f"http://127.0.0.1:{port}", port, process, log_path)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"daphne did not listen within 60 s:\n{log_path.read_text()}")


@pytest.fixture
def daphne_server(transactional_db: None, tmp_path: Path) -> Iterator[DaphneServer]:
    server = start_daphne(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        pytest.fail(
            "Debian's chromium is not installed: run `make test` (it installs chromium and "
            "fonts-noto-cjk with apt-get), or apt-get install chromium fonts-noto-cjk."
        )
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[object]:
    """Chromium for one test module at a time: Playwright's sync API keeps an event loop
    running on the main thread while it is started, which breaks every later ORM call and
    pytest-asyncio test in the run, so it must not outlive the module that uses it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


@pytest.fixture
def orm_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    """Playwright's loop on this thread makes Django take it for an async context and refuse
    ORM calls. Browser tests call the ORM only between browser steps, never from inside that
    loop, so Django's documented escape hatch is safe there (use with `usefixtures`)."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
