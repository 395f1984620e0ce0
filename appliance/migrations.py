"""Numbered schema migrations; each runs once, in order, inside one transaction.

Append only: a released migration is never edited. `SCHEMA_VERSION` is the number of the last
one, and the store refuses a database written by a newer version of the code.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: what the gateway can reach, and per-request usage.
    """
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE providers (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        base_url TEXT NOT NULL,
        api_key_env TEXT,
        api_version TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE models (
        alias TEXT PRIMARY KEY,
        provider TEXT NOT NULL REFERENCES providers(name),
        upstream_model TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        trace_id TEXT NOT NULL,
        ts TEXT NOT NULL,
        api TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        model TEXT NOT NULL,
        provider TEXT,
        upstream_model TEXT,
        stream INTEGER NOT NULL,
        status INTEGER NOT NULL,
        error TEXT,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        estimated INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        ttft_ms REAL
    );
    -- Append-only and unindexed, so a commit touches only the table's last pages: rows come
    -- in time order (id ranges are time ranges); search by trace id belongs to the audit log.
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
