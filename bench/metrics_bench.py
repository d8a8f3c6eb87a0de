"""What per-endpoint counting adds to a request's metrics write: `request_record` with the
group only (before issue 12) and with the route template too, against a real Redis.

    CHATGATE_TESTING=1 DEBUG=1 .venv/bin/python bench/metrics_bench.py [N]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    from sessions_app.devredis import start_server, stop_server

    server, url = start_server()
    os.environ["REDIS_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.conf import settings

    settings.REDIS_URL = url
    from sessions_app import metrics
    from sessions_app.gate.admission import get_manager

    manager = get_manager()
    try:
        for label, route in (("group only", None), ("group + route", "/api/v1/session/create")):
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                metrics.request_record(
                    group="api", route=route, method="POST", status=200, seconds=0.012,
                    manager=manager,
                )  # fmt: skip
                samples.append((time.perf_counter() - started) * 1e6)
            samples.sort()
            print(
                f"{label:>14}: median {statistics.median(samples):6.0f} µs, "
                f"p99 {samples[int(len(samples) * 0.99)]:6.0f} µs over {n} writes"
            )
        print(f"Redis memory after: {manager.client.info('memory')['used_memory_human']}")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
