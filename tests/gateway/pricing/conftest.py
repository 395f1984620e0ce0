"""A fresh, migrated store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from appliance.store import open_store

ACTOR = "test:alice"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    """A migrated database in a temporary directory."""
    database = open_store(tmp_path / "aigw.db")
    yield database
    database.conn.close()
