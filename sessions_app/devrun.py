"""`make run`: a local Redis when REDIS_URL is unset, the sweeper, and daphne on 127.0.0.1:8000.

Ctrl-C (or SIGTERM) stops everything this started. Migrations and the first staff account are
done before the servers start, so the printed login works at once.
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


def port_free(port: int = DEFAULT_REDIS_PORT) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Explicit handlers: a shell that started us in the background set SIGINT to ignored.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    env = dict(os.environ, HOST=HOST, PORT=PORT)  # ensure_admin prints the login at this address
    redis_process = None
    if not env.get("REDIS_URL"):
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
        children.append(
            subprocess.Popen(
                [
                    python,
                    "-m",
                    "daphne",
                    # A listen backlog of 50 makes connection bursts wait for SYN retries.
                    "-e",
                    f"tcp:port={PORT}:interface={HOST}:backlog=2048",
                    "--websocket-max-message-size",
                    "65536",
                    "config.asgi:application",
                ],
                env=env,
            )
        )
        print(f"chatgate is serving on http://{HOST}:{PORT}/ — Ctrl-C stops it.")
        print(
            "Operator commands in another terminal: "
            f"DEBUG=1 REDIS_URL={env['REDIS_URL']} .venv/bin/python manage.py queue_status"
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
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
