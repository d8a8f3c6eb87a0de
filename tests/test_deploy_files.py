"""deploy/ is checked by the programs that will read it: Debian's nginx (`nginx -t`, then a real
nginx on loopback in front of two real daphne processes), `systemd-analyze verify`, and a real
Valkey started with deploy/redis/redis.conf and as a Sentinel with deploy/redis/sentinel.conf.

The files name production paths and ports; each test copies them into tmp_path and swaps those
for free ports and temporary paths, asserting that every swapped line is there, so a change to
the files that the test no longer covers fails here instead of being silently skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect

from sessions_app.devredis import find_server_binary, free_port
from tests.live import ROOT, DaphneServer, start_daphne
from tests.test_chat_live import login_cookie

DEPLOY = ROOT / "deploy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [pytest.mark.timeout(180)]


def swap(text: str, old: str, new: str) -> str:
    assert old in text, f"deploy file no longer contains {old!r}: update this test"
    return text.replace(old, new)


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited at start:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                # +PONG, or -NOAUTH when it asks for the password: either way it is serving.
                if sock.recv(64)[:1] in (b"+", b"-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{what} did not listen within 20 s:\n{log.read_text(errors='replace')}")


# --- nginx ---------------------------------------------------------------------------------


def need_nginx() -> None:
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed: run `make test` (it installs Debian's nginx-light).")


def nginx_setup(tmp_path: Path, upstream: list[int]) -> tuple[Path, int, int, Path]:
    """The site in a minimal nginx.conf under tmp_path. Returns (conf, http, https, static)."""
    http_port, https_port = free_port(), free_port()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    static = tmp_path / "staticfiles"
    static.mkdir()
    shutil.copy(ROOT / "static" / "favicon.svg", static / "favicon.svg")
    site = (DEPLOY / "nginx" / "chatgate.conf").read_text()
    site = swap(
        site,
        "    server 127.0.0.1:8001;\n    server 127.0.0.1:8002;\n",
        "".join(f"    server 127.0.0.1:{port};\n" for port in upstream),
    )
    site = swap(
        site, "    listen 80;\n    listen [::]:80;\n", f"    listen 127.0.0.1:{http_port};\n"
    )
    site = swap(
        site,
        "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n",
        f"    listen 127.0.0.1:{https_port} ssl http2;\n",
    )
    site = swap(site, "/etc/letsencrypt/live/chat.example.com/fullchain.pem", str(cert))
    site = swap(site, "/etc/letsencrypt/live/chat.example.com/privkey.pem", str(key))
    site = swap(site, "/srv/chatgate/staticfiles/", f"{static}/")
    (tmp_path / "chatgate.conf").write_text(site)
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    # As root the workers would run as nobody, who cannot read pytest's private tmp_path.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""{user}daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {tmp_path}/nginx-access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {tmp_path}/chatgate.conf;
}}
"""
    )
    return conf, http_port, https_port, static


def nginx_command(tmp_path: Path, conf: Path, *args: str) -> list[str]:
    # -e: nginx would otherwise open Debian's /var/log/nginx/error.log before reading the conf.
    return [NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "nginx-e.log"), *args]


def test_the_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    need_nginx()
    conf, *_ = nginx_setup(tmp_path, [free_port(), free_port()])
    checked = subprocess.run(nginx_command(tmp_path, conf, "-t"), capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr


@pytest.fixture
def two_daphnes(transactional_db: None, tmp_path: Path) -> Iterator[list[DaphneServer]]:
    # SERVE_STATIC=0 as in production: a static file that arrives was served by nginx.
    servers = [start_daphne(tmp_path, name=f"d{i}", SERVE_STATIC="0") for i in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def nginx(tmp_path: Path, two_daphnes: list[DaphneServer]) -> Iterator[tuple[int, int, Path]]:
    need_nginx()
    conf, http_port, https_port, static = nginx_setup(tmp_path, [s.port for s in two_daphnes])
    log = tmp_path / "nginx-e.log"
    process = subprocess.Popen(
        nginx_command(tmp_path, conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            pytest.fail(f"nginx exited at start:\n{log.read_text(errors='replace')}")
        try:
            httpx.get(f"http://127.0.0.1:{http_port}/", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "nginx did not listen within 20 s"
            time.sleep(0.1)
    yield http_port, https_port, static
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_nginx_in_front_of_two_daphnes_serves_pages_static_files_and_websockets(
    nginx: tuple[int, int, Path], two_daphnes: list[DaphneServer]
) -> None:
    http_port, https_port, static = nginx
    base = f"https://127.0.0.1:{https_port}"
    redirect = httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=10)
    assert redirect.status_code == 301
    assert redirect.headers["location"] == "https://127.0.0.1/healthz"

    with httpx.Client(base_url=base, verify=False, timeout=30) as client:
        for _ in range(8):
            assert client.get("/healthz").status_code == 200
        # Round robin over the upstream: both processes answered some of them.
        for server in two_daphnes:
            assert "/healthz" in server.log(), server.log()

        icon = client.get("/static/favicon.svg")
        assert icon.status_code == 200
        assert icon.content == (static / "favicon.svg").read_bytes()
        assert client.get("/metrics").status_code == 404
        for server in two_daphnes:
            assert "/static/" not in server.log()
            assert "/metrics" not in server.log()

        # 12 MB is nginx's limit: the 10 MB upload limit plus the multipart envelope.
        under = client.post("/healthz", content=b"x" * (11 * 1024 * 1024))
        assert "nginx" not in under.text  # it reached daphne, which answers for itself
        over = client.post("/healthz", content=b"x" * (13 * 1024 * 1024))
        assert over.status_code == 413
        assert "nginx" in over.text

    async def chat_socket() -> dict[str, object]:
        cookie = await sync_to_async(login_cookie)("viewer")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        async with connect(
            f"wss://127.0.0.1:{https_port}/ws/chat/",
            origin=base,  # type: ignore[arg-type]
            additional_headers={"Cookie": cookie},
            ssl=context,
            open_timeout=20,
        ) as ws:
            async with asyncio.timeout(20):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "queue.status":
                        return frame

    status = asyncio.run(chat_socket())
    assert status["state"] == "active"  # a seat, through the upgrade nginx passed on


# --- systemd -------------------------------------------------------------------------------


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed here")
    for unit in (DEPLOY / "systemd").iterdir():
        # /srv/chatgate is where the README installs it; here, this checkout (whose .venv exists).
        text = unit.read_text()
        if unit.suffix == ".service":
            text = swap(text, "/srv/chatgate", str(ROOT))
        (tmp_path / unit.name).write_text(text)
    units = [
        str(tmp_path / "chatgate-daphne@8001.service"),
        str(tmp_path / "chatgate-sweeper.service"),
    ]
    shutil.copy(tmp_path / "chatgate-daphne@.service", units[0])
    checked = subprocess.run(
        [analyze, "verify", *units], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    assert "chatgate" not in checked.stderr, checked.stderr


# --- Redis and Sentinel --------------------------------------------------------------------


def start_redis_conf(
    tmp_path: Path, name: str, text: str, *extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp_path / f"{name}.conf"
    conf.write_text(text.replace("@PORT@", str(port)))
    log = tmp_path / f"{name}.log"
    process = subprocess.Popen(
        [find_server_binary(), str(conf), *extra, "--logfile", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, process, name, log)
    return process, port


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def redis_conf(tmp_path: Path) -> str:
    text = (DEPLOY / "redis" / "redis.conf").read_text()
    text = swap(text, "\nport 6379\n", "\nport @PORT@\n")
    text = swap(text, "\ndir /var/lib/redis\n", f"\ndir {tmp_path}\n")
    return text


def test_the_redis_conf_starts_with_aof_everysec_and_a_password(tmp_path: Path) -> None:
    process, port = start_redis_conf(tmp_path, "redis", redis_conf(tmp_path))
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        client = redis.Redis(port=port, password="change-me-redis-password", decode_responses=True)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.close()
    finally:
        stop(process)


def test_the_sentinel_conf_starts_and_finds_the_master(tmp_path: Path) -> None:
    master, master_port = start_redis_conf(tmp_path, "master", redis_conf(tmp_path))
    text = (DEPLOY / "redis" / "sentinel.conf").read_text()
    text = swap(text, "\nport 26379\n", "\nport @PORT@\n")
    text = swap(text, "\ndir /var/lib/redis\n", f"\ndir {tmp_path}\n")
    text = swap(
        text,
        "sentinel monitor chatgate 127.0.0.1 6379 2",
        f"sentinel monitor chatgate 127.0.0.1 {master_port} 2",
    )
    # Sentinel rewrites its file at run time: a copy it may write (deploy/ stays as it is).
    sentinel, port = start_redis_conf(tmp_path, "sentinel", text, "--sentinel")
    try:
        client = redis.Redis(port=port, decode_responses=True)
        assert client.sentinel_get_master_addr_by_name("chatgate") == ("127.0.0.1", master_port)
        # auth-pass works: the Sentinel reaches the master (not flagged down or unauthorised).
        deadline = time.monotonic() + 20
        while True:
            state = client.sentinel_master("chatgate")
            if (
                state.get("role-reported") == "master"
                and state.get("last-ok-ping-reply", 1e9) < 5000
            ):
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert "s_down" not in state["flags"] and state["flags"] == "master", state
        assert state["quorum"] == 2
        client.close()
    finally:
        stop(sentinel)
        stop(master)
