"""A Redis master, a replica and three Sentinels on loopback ports of their own, for tests of
a failover (issue 11). The same server binary as `make run` (sessions_app.devredis), the
Sentinels started with `--sentinel` and a configuration file each; never the conftest's Redis.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from sessions_app.devredis import find_server_binary, free_port

MASTER_NAME = "chatgate-test"


@dataclass
class Cluster:
    master_port: int
    replica_port: int
    sentinel_ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    @property
    def env(self) -> dict[str, str]:
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }

    def direct(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)

    def master_by_sentinels(self) -> int:
        """The master's port as the first Sentinel that answers sees it."""
        for port in self.sentinel_ports:
            try:
                with self.direct(port) as sentinel:
                    _host, master_port = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
                return int(master_port)
            except redis.RedisError:
                continue
        raise AssertionError("no Sentinel answered")


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate():
                return time.monotonic() - started
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture(name="cluster")
def cluster_fixture(tmp_path: Path) -> Iterator[Cluster]:
    """The five servers, the Sentinels agreed and ready to fail over; all killed afterwards."""
    binary = find_server_binary()
    ports = [free_port() for _ in range(5)]
    cl = Cluster(ports[0], ports[1], ports[2:])
    base = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    try:
        replica_of = ["--replicaof", "127.0.0.1", str(cl.master_port)]
        for port, extra in ((cl.master_port, []), (cl.replica_port, replica_of)):
            workdir = tmp_path / f"redis-{port}"
            workdir.mkdir()
            args = [*base, "--port", str(port), "--dir", str(workdir), *extra]
            cl.processes[port] = _start(args, tmp_path / f"redis-{port}.log")
        for port in cl.sentinel_ports:
            # A Sentinel rewrites its configuration file, so each has its own, writable one.
            conf = tmp_path / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {cl.master_port} 2\n"
                # Low, so that the failover completes in a few seconds.
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 2000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            cl.processes[port] = _start(
                [binary, str(conf), "--sentinel"], tmp_path / f"sentinel-{port}.log"
            )

        def replicating() -> bool:
            with cl.direct(cl.replica_port) as replica:
                return replica.info("replication").get("master_link_status") == "up"

        def sentinels_ready() -> bool:
            # Each Sentinel must know the replica and the two other Sentinels, or nobody can
            # be elected to fail over (quorum 2).
            for port in cl.sentinel_ports:
                with cl.direct(port) as sentinel:
                    state = sentinel.sentinel_master(MASTER_NAME)
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                    return False
            return True

        wait_for(replicating, 15, "the replica is in sync with the master")
        wait_for(sentinels_ready, 20, "every Sentinel knows the replica and the others")
        yield cl
    finally:
        for process in cl.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()
