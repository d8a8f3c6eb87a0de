"""Alerts: compare the live gate with the thresholds staff set, raise and resolve.

`alerts_evaluate()` is called by the sweeper (`sweep_sessions --loop`, every few seconds), so
alerts rise and clear even when nobody has the console open; the console only reads the
raised ones (a banner). Every raise and every resolution is written to the audit log and
mailed to staff through Django's mail settings (the console backend unless configured).

The conditions:
* **queue**: more than N people waiting, continuously for M minutes (checked at each
  evaluation, so "continuously" means at every sweep in between);
* **wait**: the 90th percentile of queue waits of the last 15 minutes above S seconds;
* **errors**: more than E generation errors in the current or the previous minute;
* **redis**: the admission store does not answer. While it does not, the other three cannot
  be measured and are left as they were (neither raised nor resolved on no evidence).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from sessions_app import metrics
from sessions_app.gate.admission import AdmissionManager, GateUnavailable, get_manager
from sessions_app.gate.services import audit
from sessions_app.models import Alert, AlertSettings

logger = logging.getLogger(__name__)

WAIT_WINDOW_SECONDS = 15 * 60


@dataclass(frozen=True)
class Reading:
    """One condition now: breached (True/False), or None when it is off or cannot be measured."""

    breached: bool | None
    value: float = 0.0
    threshold: float = 0.0
    hold_seconds: float = 0.0  # how long it must hold before it is raised
    off: bool = False  # the threshold is switched off: resolve whatever is open


@dataclass
class Evaluation:
    raised: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)


def _readings(rules: AlertSettings, manager: AdmissionManager) -> dict[str, Reading]:
    try:
        counts = manager.counts()
        waits = metrics.wait_stats(window_seconds=WAIT_WINDOW_SECONDS, manager=manager)
        series = metrics.minute_series(minutes=2, now=time.time(), manager=manager)
    except (GateUnavailable, redis.RedisError):
        unknown = Reading(breached=None)
        return {
            Alert.Kind.REDIS: Reading(breached=True, value=1, off=not rules.redis_down),
            Alert.Kind.QUEUE: unknown,
            Alert.Kind.WAIT: unknown,
            Alert.Kind.ERRORS: unknown,
        }
    errors = max((m.backend_errors for m in series), default=0)
    return {
        Alert.Kind.REDIS: Reading(breached=False, off=not rules.redis_down),
        Alert.Kind.QUEUE: Reading(
            breached=counts["queued"] > rules.queue_length,
            value=counts["queued"],
            threshold=rules.queue_length,
            hold_seconds=rules.queue_minutes * 60,
            off=rules.queue_length == 0,
        ),
        Alert.Kind.WAIT: Reading(
            breached=waits.p90 is not None and waits.p90 > rules.wait_p90_seconds,
            value=round(waits.p90 or 0.0, 1),
            threshold=rules.wait_p90_seconds,
            off=rules.wait_p90_seconds == 0,
        ),
        Alert.Kind.ERRORS: Reading(
            breached=errors > rules.errors_per_minute,
            value=errors,
            threshold=rules.errors_per_minute,
            off=rules.errors_per_minute == 0,
        ),
    }


def alerts_evaluate(
    *, now: datetime | None = None, manager: AdmissionManager | None = None
) -> Evaluation:
    """Raises what has held long enough, resolves what stopped holding; returns both."""
    now = now or timezone.now()
    rules = AlertSettings.load()
    result = Evaluation()
    for kind, reading in _readings(rules, manager or get_manager()).items():
        open_alert = Alert.objects.filter(kind=kind, resolved_at__isnull=True).first()
        if reading.off or reading.breached is False:
            if open_alert is None:
                continue
            if open_alert.raised_at is None:
                open_alert.delete()  # never raised: nobody to tell
                continue
            # Conditional updates: of two evaluators (two sweepers), only one tells staff.
            claimed = Alert.objects.filter(pk=open_alert.pk, resolved_at__isnull=True).update(
                resolved_at=now
            )
            if not claimed:
                continue
            open_alert.resolved_at = now
            _announce(open_alert, raised=False)
            result.resolved.append(open_alert)
            continue
        if reading.breached is None:
            continue  # cannot measure now (Redis down): keep whatever state it had
        if open_alert is None:
            try:
                with transaction.atomic():
                    open_alert = Alert.objects.create(
                        kind=kind, since=now, value=reading.value, threshold=reading.threshold
                    )
            except IntegrityError:
                continue  # another evaluator opened it a moment ago
        open_alert.value = reading.value
        open_alert.threshold = reading.threshold
        Alert.objects.filter(pk=open_alert.pk).update(
            value=reading.value, threshold=reading.threshold
        )
        due = open_alert.since + timedelta(seconds=reading.hold_seconds)
        if open_alert.raised_at is None and now >= due:
            claimed = Alert.objects.filter(pk=open_alert.pk, raised_at__isnull=True).update(
                raised_at=now
            )
            if not claimed:
                continue
            open_alert.raised_at = now
            _announce(open_alert, raised=True)
            result.raised.append(open_alert)
    return result


def alerts_raised() -> list[Alert]:
    """The alerts staff should see now (the console's banner)."""
    return list(
        Alert.objects.filter(raised_at__isnull=False, resolved_at__isnull=True).order_by(
            "raised_at"
        )
    )


def alert_text(alert: Alert) -> str:
    """One sentence a person reads: what is wrong, how much, against which threshold."""
    value, threshold = alert.value, alert.threshold
    if alert.kind == Alert.Kind.QUEUE:
        return _("%(n)d people are waiting (more than %(t)d for a while).") % {
            "n": value,
            "t": threshold,
        }
    if alert.kind == Alert.Kind.WAIT:
        return _("Waits are long: 90%% of people waited up to %(v)d s (threshold %(t)d s).") % {
            "v": value,
            "t": threshold,
        }
    if alert.kind == Alert.Kind.ERRORS:
        return _("The model backend failed %(v)d answers in a minute (threshold %(t)d).") % {
            "v": value,
            "t": threshold,
        }
    return _("Redis is unreachable: new sessions are refused until it is back.")


def _announce(alert: Alert, *, raised: bool) -> None:
    detail: dict[str, Any] = {
        "kind": alert.kind,
        "value": alert.value,
        "threshold": alert.threshold,
    }
    audit(
        actor=None,
        action="alert.raise" if raised else "alert.resolve",
        target=alert.kind,
        detail=detail,
    )
    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return
    with translation.override(getattr(settings, "ALERT_MAIL_LANGUAGE", "ko")):
        subject = (
            _("[chatgate] Alert: %(kind)s") if raised else _("[chatgate] Resolved: %(kind)s")
        ) % {"kind": alert.get_kind_display()}
        body = (
            alert_text(alert)
            if raised
            else _("This alert has cleared: %(text)s") % {"text": alert_text(alert)}
        )
    try:
        send_mail(subject, body, None, recipients)
    except Exception:  # a broken mail server must not stop the sweeper; the audit row stands
        logger.exception("could not mail the alert %s", alert.kind)


def alert_thresholds_set(*, actor: Any, **changes: Any) -> AlertSettings:
    """Changes the thresholds (console, admin), validated and audited; takes effect at the
    next evaluation."""
    unknown = set(changes) - set(AlertSettings.EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"unknown alert thresholds: {sorted(unknown)}")
    rules = AlertSettings.load()
    before = {name: getattr(rules, name) for name in changes}
    for name, value in changes.items():
        setattr(rules, name, value)
    rules.save()
    audit(
        actor=actor,
        action="alerts.thresholds",
        detail={name: [before[name], value] for name, value in changes.items()},
    )
    return rules
