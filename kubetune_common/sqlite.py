"""SQLite databases that kubetune does not open itself (Optuna's, MLflow's)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

PREFIX = "sqlite:///"


def use_wal(url: str) -> None:
    """Puts the SQLite database at `url` (created if missing) in write-ahead-log mode.

    The mode is stored in the file, so every later connection, in any process, uses it:
    a commit appends to the log instead of rewriting a rollback journal (about 0.1 ms
    instead of 1.6 ms here), and readers no longer block the writer. Other URLs
    (PostgreSQL, in-memory SQLite) are left alone."""
    if not url.startswith(PREFIX) or url[len(PREFIX):] in ("", ":memory:"):
        return
    path = Path(url[len(PREFIX):])
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=60)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
