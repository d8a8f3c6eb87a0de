"""schemathesis against a live daphne serving /api/chat/openapi.json: zero 5xx, and the answers
conform to the published description. Same harness as tests/test_api_schema.py (v1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from sessions_app.chat import conversations
from sessions_app.models import ApiToken
from tests.live import start_daphne
from tests.test_api_schema import CHECKS


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors_in_the_chat_api(
    transactional_db, tmp_path: Path
) -> None:
    owner = get_user_model().objects.create_user(username="schemathesis")
    conversations.conversation_create(owner=owner, title="fuzzed", announce=False)
    _row, raw = ApiToken.issue(name="schemathesis", owner=owner)
    server = start_daphne(tmp_path)
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")), "run",
                f"{server.url}/api/chat/openapi.json",
                "--checks", CHECKS,
                "--header", f"Authorization: Bearer {raw}",
                "--max-examples", "25",
                "--max-time", "60",
                "--workers", "1",
                "--seed", "9",
                "--generation-database", "none",
                "--request-timeout", "10",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 0, (
            output[-6000:] + "\n--- server log ---\n" + server.log()[-3000:]
        )
        assert "Traceback" not in server.log(), server.log()[-3000:]
    finally:
        server.stop()
