"""A server-like process for tests/test_journal.py: it makes transitions through the services
with the journal written in the background (as a server does), prints what it did as one JSON
line, and then waits to be killed before anything writes its journal to the record.

    python -m tests.journal_worker USER_PK [USER_PK ...]

The first person is opened (active under a limit of 1), the others queue behind (with a
reference each); then the first leaves, which promotes the second.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("CHATGATE_TESTING", "1")
os.environ["JOURNAL_FLUSH"] = "background"
# No sweeper runs, and this process's backup must not write either before it is killed: the
# point is a process that dies between the transitions and the record.
os.environ["JOURNAL_STALE_MS"] = str(10**9)

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from sessions_app.gate import services  # noqa: E402
from sessions_app.gate.admission import get_manager  # noqa: E402


def main(pks: list[int]) -> None:
    people = [get_user_model().objects.get(pk=pk) for pk in pks]
    get_manager().set_limits({"max_active_sessions": 1})
    opened = [
        services.session_open(user=person, via="api", client_session_id=f"ref-{i}")
        for i, person in enumerate(people)
    ]
    services.session_close(session_id=opened[0].session_id, reason="user")
    print(json.dumps({"ids": [o.session_id for o in opened]}), flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main([int(pk) for pk in sys.argv[1:]])
