"""Prints the gate's state: counts, limits, query slots, active sessions and the queue."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.gate import selectors
from sessions_app.gate.admission import GateUnavailable
from sessions_app.gate.selectors import GateOverview

# Home the cursor and clear the screen: a redraw in place, like `watch`.
CLEAR = "\x1b[H\x1b[2J"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def render(overview: GateOverview) -> str:
    gate = overview.gate
    now = overview.now
    paused = "  ADMISSIONS PAUSED" if gate.admissions_paused else ""
    lines = [
        f"sessions  active {gate.active}/{gate.max_active_sessions}   queued {gate.queued}{paused}",
        f"queries   generating {gate.in_flight}/{gate.max_concurrent_queries}   "
        f"waiting for a slot {gate.waiting_queries}",
        f"limits    idle timeout {_duration(gate.idle_timeout_seconds)}   "
        f"grace {_duration(gate.disconnect_grace_seconds)}   "
        f"query wait {_duration(gate.query_wait_timeout_seconds)}",
    ]
    if gate.banner_message:
        lines.append(f"banner    {gate.banner_message}")
    lines.append("")
    lines.append(f"ACTIVE ({len(overview.active)})")
    if overview.active:
        lines.append(f"  {'user':<24} {'for':>8} {'idle':>8}  flags        session")
    for entry in overview.active:
        since = now - entry.activated if entry.activated else None
        flags = " ".join(
            flag
            for flag, on in (
                ("gen", entry.generating),
                ("seen", entry.connected),
                ("over", entry.over_limit),
            )
            if on
        )
        lines.append(
            f"  {entry.username[:24]:<24} {_duration(since):>8} {_duration(entry.idle_for):>8}"
            f"  {flags:<12} {entry.session_id}"
        )
    shown = len(overview.queue)
    more = f", first {shown} shown" if gate.queued > shown else ""
    lines.append("")
    lines.append(f"QUEUE ({gate.queued}{more})")
    if overview.queue:
        lines.append(f"  {'#':>5} {'user':<24} {'lane':<8} {'waiting':>8} {'eta':>8}  session")
    for queued in overview.queue:
        eta = f"~{_duration(queued.eta_seconds)}" if queued.eta_seconds else "-"
        lines.append(
            f"  {queued.position:>5} {queued.username[:24]:<24} {queued.lane:<8} "
            f"{_duration(now - queued.waiting_since):>8} {eta:>8}  {queued.session_id}"
        )
    return "\n".join(lines)


class Command(BaseCommand):
    help = (
        "Show active sessions, the queue with positions, query slots and limits. "
        "--watch redraws every second until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        parser.add_argument("--limit", type=int, default=50, help="Queue rows to show (50).")
        parser.add_argument(
            "--watch", action="store_true", help="Redraw every --interval seconds until Ctrl-C."
        )
        parser.add_argument(
            "--interval", type=float, default=1.0, help="Seconds between redraws (1)."
        )
        parser.add_argument(
            "--count",
            type=int,
            default=0,
            help="With --watch: stop after this many redraws (0 = until Ctrl-C).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        if options["interval"] <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        if not options["watch"]:
            try:
                overview = selectors.gate_overview(options["limit"])
            except GateUnavailable as exc:
                raise CommandError(
                    f"{exc} Check that Redis is running and REDIS_URL (or REDIS_SENTINELS) "
                    "points at it."
                ) from exc
            self._show(overview, options["json"])
            return
        self._watch(options)

    def _show(self, overview: GateOverview, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(overview.as_dict(), indent=2, default=str))
        else:
            self.stdout.write(render(overview))

    def _watch(self, options: dict[str, Any]) -> None:
        drawn = 0
        try:
            while True:
                try:
                    overview = selectors.gate_overview(options["limit"])
                except GateUnavailable as exc:
                    # A watch outlives a Redis restart: say so and keep trying.
                    frame = f"Redis unreachable, retrying every {options['interval']:g}s: {exc}"
                    self.stdout.write(CLEAR + self.style.ERROR(frame))
                else:
                    if options["json"]:
                        self._show(overview, True)
                    else:
                        stamp = time.strftime("%H:%M:%S")
                        header = (
                            f"chatgate  {stamp}  (every {options['interval']:g}s, Ctrl-C stops)"
                        )
                        self.stdout.write(CLEAR + header + "\n\n" + render(overview))
                self.stdout.flush()
                drawn += 1
                if options["count"] and drawn >= options["count"]:
                    return
                time.sleep(options["interval"])
        except KeyboardInterrupt:
            self.stdout.write("")
