"""The journal's writer alone, as the sweeper runs it in production (JOURNAL_FLUSH=background):
benchmarks start it in a process of its own so that the record is written off the measured path,
without the sweeper's sweeps and reconciles (which would end a benchmark's made-up people).

    journal_writer.start()      (from a benchmark, after its setup_django(): the child inherits
                                 its database, Redis prefix and settings through the environment)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def start(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The writer as a child process; the caller terminates it (SIGTERM) when done."""
    return subprocess.Popen([sys.executable, str(HERE / "journal_writer.py")], env=env)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    os.environ["JOURNAL_FLUSH"] = "background"
    from _setup import setup_django

    setup_django()  # the parent's DATABASE_URL and Redis prefix come with the environment
    from sessions_app.gate import journal

    journal.run_writer().join()
