"""A throwaway local PostgreSQL for the tests' PostgreSQL pass (`make test`), nothing by hand.

It runs Debian's PostgreSQL binaries (`/usr/lib/postgresql/<newest>/bin`, or $PG_BINDIR) on a
cluster made in a temp dir, listening on 127.0.0.1 and a free port only, with durability off
(a test database is thrown away), and removes the cluster when the wrapped command ends.
PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.

    python -m sessions_app.devpostgres -- CMD ARGS...   # runs CMD with DATABASE_URL set
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sessions_app.devredis import free_port, run_child

DATABASE = "chatgate"


def find_bindir() -> Path:
    explicit = os.environ.get("PG_BINDIR")
    if explicit:
        return Path(explicit)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if not found:
        raise SystemExit(
            "PostgreSQL is not installed: run `make test` (it installs Debian's postgresql "
            "with apt-get), or set DATABASE_URL to a PostgreSQL server you own."
        )
    return Path(found[-1]).parent


@dataclass
class Cluster:
    bindir: Path
    workdir: Path
    port: int
    as_user: list[str]  # the command prefix that runs a binary as the cluster's owner

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def run(self, binary: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload,no-any-return]
            [*self.as_user, str(self.bindir / binary), *args],
            check=True,
            capture_output=True,
            text=True,
            **kwargs,
        )


def _owner_prefix() -> tuple[list[str], int | None, int | None]:
    if os.geteuid() != 0:
        return [], None, None
    owner = pwd.getpwnam("postgres")
    return ["runuser", "-u", "postgres", "--"], owner.pw_uid, owner.pw_gid


def start_server() -> Cluster:
    """initdb + start + createdb; returns when the database accepts connections."""
    bindir = find_bindir()
    prefix, uid, gid = _owner_prefix()
    workdir = Path(tempfile.mkdtemp(prefix="chatgate-pg-"))
    if uid is not None and gid is not None:
        os.chown(workdir, uid, gid)
    cluster = Cluster(bindir, workdir, free_port(), prefix)
    data = workdir / "data"
    try:
        # trust on loopback only: the cluster lives for one test run and listens nowhere else.
        cluster.run(
            "initdb", "-D", str(data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        options = " ".join(
            [
                f"-k {workdir}",
                f"-p {cluster.port}",
                "-c listen_addresses=127.0.0.1",
                # The multi-process tests run 4 daphne processes, each holding at most
                # API_CONCURRENCY connections at once (api.views.bounded), beside pytest's own.
                # DEVPOSTGRES_MAX_CONNECTIONS lowers it to show that bound holds.
                f"-c max_connections={os.environ.get('DEVPOSTGRES_MAX_CONNECTIONS', '300')}",
                # Nothing here must survive a crash: skip every flush to disk.
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            ]
        )
        cluster.run(
            "pg_ctl", "-D", str(data), "-l", str(workdir / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(cluster.port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit("PostgreSQL did not accept connections within 30 seconds.")
            time.sleep(0.1)
        cluster.run(
            "createdb", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", DATABASE
        )
    except (subprocess.CalledProcessError, SystemExit) as exc:
        log = workdir / "server.log"
        detail = getattr(exc, "stderr", "") or (log.read_text() if log.exists() else "")
        stop_server(cluster)
        raise SystemExit(f"Could not start a throwaway PostgreSQL: {exc}\n{detail}") from exc
    return cluster


def stop_server(cluster: Cluster) -> None:
    data = cluster.workdir / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            [*cluster.as_user, str(cluster.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
             "-w", "stop"],
            capture_output=True,
        )  # fmt: skip
    shutil.rmtree(cluster.workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(__doc__)
        return 2
    cluster = start_server()
    print(f"chatgate: started a throwaway PostgreSQL at {cluster.url}", file=sys.stderr)
    try:
        return run_child(argv, DATABASE_URL=cluster.url)
    finally:
        stop_server(cluster)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
