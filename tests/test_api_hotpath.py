"""The v1 create's hot path (issue 11, P9): what it no longer does per request, and that the
rules it skips asking about every time still hold.

- A service token is looked up in SQL once per process per API_TOKEN_CACHE_SECONDS; a revoke
  through `api_token_revoke` (or the admin) is seen by this process at once.
- A rate check is one Redis round trip: windows follow Redis's clock through an offset measured
  now and then, not a TIME call per check. A create counts its token's and its person's budget
  in that one round trip, and a budget that refuses stops the count.
- The named person is read with one prebuilt statement, into the same model the ORM makes.
- Through a real daphne, the views run on the process's API pool: a pool thread keeps its
  database connection, and a burst larger than the pool is answered in full.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from sessions_app import ratelimit
from sessions_app.api.auth import user_named
from sessions_app.api.tokens import api_token_revoke
from sessions_app.gate.admission import get_manager
from sessions_app.models import ApiToken
from tests.burst_client import request
from tests.live import start_daphne

API = "/api/v1"


def _create(raw: str, user_id: str) -> Any:
    return Client().post(
        f"{API}/session/create",
        json.dumps({"user_id": user_id}),
        "application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )


def _token_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "sessions_app_apitoken" in q["sql"]]


@pytest.mark.django_db
def test_a_token_is_looked_up_once_and_a_revoke_is_seen_at_once() -> None:
    owner = get_user_model().objects.create_user("gateway")
    row, raw = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)
    assert _create(raw, "ada").status_code == 201
    with CaptureQueriesContext(connection) as queries:
        assert _create(raw, "grace").status_code == 201
    assert _token_queries(queries) == [], "the token was looked up again within its cache time"

    assert api_token_revoke(token_id=row.pk, actor=owner)
    answer = _create(raw, "linus")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "INVALID_TOKEN"


@pytest.mark.django_db
def test_an_unknown_token_is_never_cached(settings: Any) -> None:
    """A token issued after a failed try works at once: failures are asked every time."""
    owner = get_user_model().objects.create_user("gateway")
    assert _create("cg_not-issued-yet", "ada").status_code == 401
    _row, raw = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)
    assert _create(raw, "ada").status_code == 201
    settings.CHATGATE = {**settings.CHATGATE, "API_TOKEN_CACHE_SECONDS": 0}
    with CaptureQueriesContext(connection) as queries:
        assert _create(raw, "grace").status_code == 201
    assert len(_token_queries(queries)) == 1, "API_TOKEN_CACHE_SECONDS=0 turns the cache off"


@pytest.mark.django_db
def test_a_rate_check_is_one_round_trip_on_redis_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = get_manager()
    asked = []
    real_time = manager.server_time
    monkeypatch.setattr(manager, "server_time", lambda: asked.append(1) or real_time())
    monkeypatch.setattr(ratelimit, "_clock", None)
    decisions = [ratelimit.rate_check(scope="t", ident="ada", limit=3) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert 1 <= decisions[-1].retry_after <= 60
    assert len(asked) == 1, "Redis was asked the time for every check"
    # The window is Redis's: the counted key is the one Redis's own clock names.
    window = int(real_time() // 60)
    assert manager.client.get(manager.keys.rate("t", "ada", window)) in (b"5", None)


@pytest.mark.django_db
def test_budgets_are_counted_in_order_and_a_refusal_stops_the_count() -> None:
    manager = get_manager()
    token = ratelimit.Limit("tok", "t1", 1)
    person = ratelimit.Limit("person", "ada", 5)
    assert ratelimit.rate_check_all([token, person])[0] is None
    refused, decision = ratelimit.rate_check_all([token, person])
    assert refused is token and not decision.allowed and decision.count == 2
    window = int(ratelimit.server_now() // 60)
    assert manager.client.get(manager.keys.rate("person", "ada", window)) == b"1"
    assert 60 < manager.client.ttl(manager.keys.rate("tok", "t1", window)) <= 120

    refused, _decision = ratelimit.rate_check_all([ratelimit.Limit("tok", "t2", 9), person])
    assert refused is None
    assert manager.client.get(manager.keys.rate("tok", "t2", window)) == b"1"


@pytest.mark.django_db
def test_a_create_for_a_known_person_counts_both_budgets_in_one_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = get_user_model().objects.create_user("gateway")
    _row, raw = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)
    get_user_model().objects.create_user("ada")
    calls: list[int] = []
    real = ratelimit.COUNT

    def counted(keys: list[str], args: list[Any], client: Any) -> Any:
        calls.append(len(keys))
        return real(keys=keys, args=args, client=client)

    monkeypatch.setattr(ratelimit, "COUNT", counted)
    assert _create(raw, "ada").status_code == 201
    assert calls == [2]
    calls.clear()
    assert _create(raw, "newcomer").status_code == 201  # the token's budget before provisioning
    assert calls == [1, 1]


@pytest.mark.django_db
def test_the_named_person_is_the_model_the_orm_reads_in_one_query() -> None:
    User = get_user_model()
    User.objects.create_user("ada", email="ada@example.com")
    with CaptureQueriesContext(connection) as queries:
        found = user_named("ada")
        missing = user_named("nobody")
    assert len(queries.captured_queries) == 2 and missing is None
    expected = User.objects.get(username="ada")
    fields = [f.attname for f in User._meta.concrete_fields]
    assert [getattr(found, f) for f in fields] == [getattr(expected, f) for f in fields]
    assert found.date_joined.tzinfo is not None and found.is_active is True  # converters ran
    assert found._state.adding is False and found._state.db == "default"


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_a_burst_larger_than_the_pool_is_answered_through_daphne(tmp_path: Path) -> None:
    """More creates at once than API_CONCURRENCY: the rest wait in the pool's queue, nobody is
    refused, and every answer is the person's own session."""
    server = start_daphne(tmp_path, API_CONCURRENCY="2", API_TOKEN_CREATE_RATE_PER_MINUTE="10000")
    try:
        owner = get_user_model().objects.create_user("gateway")
        _row, raw = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)
        get_manager().set_limits({"max_active_sessions": 5})
        headers = {"Authorization": f"Bearer {raw}"}

        async def burst() -> list[Any]:
            calls = [
                request(server.port, "POST", f"{API}/session/create",
                        body={"user_id": f"p{i}"}, headers=headers)
                for i in range(40)
            ]  # fmt: skip
            return await asyncio.gather(*calls)

        answers = asyncio.run(burst())
        assert [a.status for a in answers] == [201] * 40
        assert sorted(a.body["user_id"] for a in answers) == sorted(f"p{i}" for i in range(40))
        assert len({a.body["session_id"] for a in answers}) == 40
        assert sorted(a.body.get("position", 0) for a in answers) == [0] * 5 + list(range(1, 36))
        assert "Traceback" not in server.log()
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_pool_thread_keeps_its_sqlite_connection_between_requests() -> None:
    """Django closes a request's connection when it ends; the pool's threads keep theirs, so a
    create does not pay for opening the database (and its PRAGMAs) again."""
    from django.db import connections
    from django.db.backends.signals import connection_created

    from sessions_app.api import views

    if connection.vendor != "sqlite":
        pytest.skip("a server database follows CONN_MAX_AGE, as for any request")
    opened: list[Any] = []

    def count(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(connection)

    def one_request(_request: Any) -> Any:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        return threading.get_ident()

    pool = views.api_pool()
    connection_created.connect(count)
    try:
        # One after another, as requests on a quiet process: the pool reuses an idle thread.
        threads = {
            pool.submit(views._pooled_call, one_request, None, {}).result() for _ in "x" * 12
        }
    finally:
        connection_created.disconnect(count)
    # Twelve requests on a few threads: closing after each would have opened twelve.
    assert len(opened) <= len(threads) < 12, "a pool thread opened its connection again"


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_a_token_call_skips_the_page_middlewares_and_keeps_the_safety_ones(
    tmp_path: Path,
) -> None:
    """Through daphne: a token's create is served without the locale, session, CSRF and frame
    middlewares (no Content-Language, no X-Frame-Options) but keeps the security headers and
    the host check; a browser's call to the same API still takes the full chain."""
    import urllib.error
    import urllib.request

    server = start_daphne(tmp_path)
    try:
        owner = get_user_model().objects.create_user("gateway")
        _row, raw = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)

        def call(headers: dict[str, str]) -> tuple[int, Any]:
            req = urllib.request.Request(
                f"{server.url}{API}/session/create",
                data=json.dumps({"user_id": "ada"}).encode(),
                headers={"Content-Type": "application/json", **headers},
                method="POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as answer:
                    return answer.status, answer.headers
            except urllib.error.HTTPError as error:
                return error.code, error.headers

        status, headers = call({"Authorization": f"Bearer {raw}"})
        assert status == 201
        assert headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware ran
        assert headers["Content-Language"] is None  # LocaleMiddleware did not
        assert headers["X-Frame-Options"] is None  # nor the frame middleware

        status, headers = call({"Authorization": f"Bearer {raw}", "Host": "evil.example"})
        assert status == 400, "the host check (CommonMiddleware) must still run"

        status, headers = call({})  # no token: the full chain answers (a 401 in JSON)
        assert status == 401
        assert headers["Content-Language"] is not None
        assert headers["X-Frame-Options"] == "DENY"
    finally:
        server.stop()
