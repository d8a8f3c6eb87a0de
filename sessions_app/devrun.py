"""`make run`: a local Redis unless REDIS_URL or REDIS_SENTINELS is set, the sweeper, and daphne.

Ctrl-C (or SIGTERM) stops everything this started. Migrations and the first staff account are
done before the servers start, so the printed login works at once.

`WORKERS=N make run` serves N daphne processes behind the one port, plus exactly one sweeper.
This supervisor opens one listening socket per process on the port (SO_REUSEPORT) and each
daphne adopts its own (twisted's `fd:` endpoint): the kernel spreads new connections over them,
so there is no proxy to install or configure and no process is special. Nothing is sticky: every
page, socket and API call works on whichever process it lands (admission state and the channel
layer are in Redis, the record in the database). WORKERS=1 (the default) runs daphne on its own
port exactly as before.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from sessions_app.devredis import start_server, stop_server

HOST = os.environ.get("HOST", "127.0.0.1")
DEFAULT_REDIS_PORT = 6379
PORT = os.environ.get("PORT", "8000")
# daphne's own backlog of 50 makes connection bursts wait for SYN retries (DESIGN.md §7).
BACKLOG = 2048


def workers_wanted() -> int:
    raw = os.environ.get("WORKERS", "1").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise SystemExit(f"WORKERS must be a whole number from 1 to 64, not {raw!r}.")
    return int(raw)


def port_listener(host: str, port: int) -> socket.socket:
    """One of the listening sockets on the shared port, for one daphne process to adopt.

    Each process gets a socket of its own, all bound to the same port with SO_REUSEPORT, so the
    kernel spreads new connections evenly over them (by a hash of the client's address). One
    socket shared by every process would not: twisted accepts in a loop, and the first process
    to wake took all 24 connections of a burst in a test."""
    if ":" in host:
        # daphne's `fd:` endpoint adopts IPv4 sockets only (it passes no address family).
        raise SystemExit("WORKERS above 1 needs an IPv4 HOST (for example 127.0.0.1).")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def daphne_command(python: str, endpoint: str) -> list[str]:
    return [
        python,
        "-m",
        "daphne",
        "-e",
        endpoint,
        "--websocket-max-message-size",
        "65536",
        "config.asgi:application",
    ]


def port_free(port: int = DEFAULT_REDIS_PORT) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def redis_env(env: dict[str, str]) -> str:
    """The Redis settings another terminal needs to reach the same store."""
    names = ("REDIS_URL", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER")
    return " ".join(f"{name}={env[name]}" for name in names if env.get(name))


def main() -> int:
    # Explicit handlers: a shell that started us in the background set SIGINT to ignored.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    env = dict(os.environ, HOST=HOST, PORT=PORT)  # ensure_admin prints the login at this address
    redis_process = None
    # With Sentinels the servers are the operator's (issue 11): nothing to start.
    if not env.get("REDIS_URL") and not env.get("REDIS_SENTINELS"):
        # Redis's usual port when it is free, so that `manage.py` commands in another terminal
        # find this server with the default REDIS_URL.
        redis_process, env["REDIS_URL"] = start_server(DEFAULT_REDIS_PORT if port_free() else None)
        print(f"Started a local Redis at {env['REDIS_URL']} (set REDIS_URL to use your own).")
    python = sys.executable
    manage = [python, "manage.py"]
    children: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
        subprocess.run([*manage, "ensure_admin"], env=env, check=True)
        children.append(subprocess.Popen([*manage, "sweep_sessions", "--loop"], env=env))
        workers = workers_wanted()
        if workers == 1:
            endpoint = f"tcp:port={PORT}:interface={HOST}:backlog={BACKLOG}"
            children.append(subprocess.Popen(daphne_command(python, endpoint), env=env))
        else:
            # All sockets are bound before any process starts, so no connection is refused.
            listeners = [port_listener(HOST, int(PORT)) for _ in range(workers)]
            for listener in listeners:
                fd = listener.fileno()
                children.append(
                    subprocess.Popen(
                        daphne_command(python, f"fd:fileno={fd}"), env=env, pass_fds=(fd,)
                    )
                )
                # The child holds it now; ours would only keep the port busy after it stops.
                listener.close()
            print(f"{workers} daphne processes share the port (one sweeper).")
        print(f"chatgate is serving on http://{HOST}:{PORT}/ — Ctrl-C stops it.")
        print(
            "Operator commands in another terminal: "
            f"DEBUG=1 {redis_env(env)} .venv/bin/python manage.py queue_status"
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # Ctrl-C reaches every process of the terminal's group at once: a second signal while
        # we wait for the children must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in children:
            if child.poll() is None:
                child.terminate()  # daphne closes its sockets gracefully on SIGTERM
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_process is not None:
            stop_server(redis_process)
        print("chatgate stopped.")


if __name__ == "__main__":
    sys.exit(main())
