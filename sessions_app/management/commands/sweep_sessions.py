"""Runs the sweep once, or forever with --loop (the sweeper `make run` starts)."""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app import alerts, conf, metrics
from sessions_app.chat.sweep import messages_sweep
from sessions_app.gate import journal, reconcile, services
from sessions_app.gate.admission import GateUnavailable, get_manager

GAUGE_SAMPLE_SECONDS = 15.0
# Alerts are minutes-scale conditions; a few seconds between evaluations is prompt enough and
# keeps the database reads off every one-second sweep.
ALERT_EVALUATE_SECONDS = 5.0


class Command(BaseCommand):
    help = (
        "Expire idle sessions, drop abandoned ones, reclaim dead query slots, promote; end "
        "answers nobody is writing any more. With --loop, also reconcile Redis with the record "
        "by itself after a Redis restart, failover or data loss."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="Keep sweeping until stopped.")
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="Seconds between sweeps with --loop (default SWEEP_INTERVAL_SECONDS, 1).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"] or float(conf.get("SWEEP_INTERVAL_SECONDS"))
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        if not options["loop"]:
            try:
                result = services.sessions_sweep()
                journal.flush()
                ended = messages_sweep()
            except GateUnavailable as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                f"expired {len(result.expired)}, abandoned {len(result.abandoned)}, "
                f"promoted {len(result.promoted)}, leases reclaimed {result.reclaimed}, "
                f"orphaned answers ended {ended}"
            )
            return
        self.stdout.write(f"Sweeping every {interval:g} s; Ctrl-C stops.")
        synced = False
        next_sample = next_alerts = 0.0
        manager = get_manager()
        # The journal's writer: the record and the notices of every process's transitions.
        journal.run_writer()
        try:
            while True:
                try:
                    if not synced or not manager.config():
                        # After a Redis restart the live limits are gone: push them again.
                        services.limits_sync_from_record()
                        synced = True
                    # After a Redis restart, failover or data loss: close as `lost` what
                    # Redis no longer holds and tell those people (issue 11).
                    reconcile.reconcile_if_redis_changed()
                    result = services.sessions_sweep()
                    # Answers left behind by a dead process or a closed seat (issue 8).
                    messages_sweep()
                    if time.monotonic() >= next_sample:
                        # The console's hour chart needs a point per minute even when nobody
                        # watches or scrapes.
                        counts = manager.counts()
                        metrics.gauges_sample(active=counts["active"], queued=counts["queued"])
                        next_sample = time.monotonic() + GAUGE_SAMPLE_SECONDS
                    # A full batch means more is due: go again at once.
                    if len(result.expired) >= 200 or len(result.abandoned) >= 200:
                        continue
                except GateUnavailable as exc:
                    synced = False
                    self.stderr.write(f"Redis unreachable, retrying: {exc}")
                if time.monotonic() >= next_alerts:  # also while Redis is down: that is one
                    next_alerts = time.monotonic() + ALERT_EVALUATE_SECONDS
                    try:
                        alerts.alerts_evaluate()
                    except Exception as exc:  # an alert bug must never stop the sweeping
                        self.stderr.write(f"Alert evaluation failed: {exc!r}")
                time.sleep(interval)
        except KeyboardInterrupt:
            self.stdout.write("Sweeper stopped.")
