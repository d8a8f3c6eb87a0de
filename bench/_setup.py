"""The start every benchmark here shares: the project importable, the test settings, a Redis key
prefix of the run's own (a benchmark never touches another run's keys) and, when given, a SQLite
database of its own. Call `setup_django()` before importing anything from Django or the project.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(database: Path | None = None) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("CHATGATE_TESTING", "1")
    os.environ.setdefault("CHATGATE_REDIS_PREFIX", f"bench{uuid.uuid4().hex[:6]}")
    if database is not None:
        os.environ.setdefault("DATABASE_URL", f"sqlite:///{database}")

    import django

    django.setup()
