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
    # 2: tenancy, gateway keys, admin tokens and the admin audit trail.
    """
    CREATE TABLE departments (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        department TEXT NOT NULL REFERENCES departments(name),
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        email TEXT,
        department TEXT REFERENCES departments(name),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    -- Only the SHA-256 of a secret is kept; `prefix` is what lists show. `prev_hash` is the
    -- secret replaced by the last rotation, accepted until `prev_expires_at`.
    CREATE TABLE keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        project TEXT NOT NULL REFERENCES projects(name),
        user TEXT REFERENCES users(name),
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        prev_hash TEXT UNIQUE,
        prev_expires_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),
        models TEXT NOT NULL DEFAULT '[]',
        cidrs TEXT NOT NULL DEFAULT '[]',
        expires_at TEXT,
        rpm INTEGER,
        tpm INTEGER,
        budget_micros INTEGER,
        tags TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        rotated_at TEXT,
        revoked_at TEXT
    );
    CREATE INDEX keys_project ON keys(project);
    CREATE TABLE admin_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'finance')),
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    -- Every admin action, hash-chained: `hash` = SHA-256 over the previous row's hash and this
    -- row's fields, so an edited or deleted row breaks the chain. Secrets are never written here.
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        object_type TEXT NOT NULL,
        object_id TEXT NOT NULL,
        before TEXT,
        after TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    """,
    # 3: who made each request (the key, its owners and scenario tags), for cost allocation.
    """
    ALTER TABLE usage ADD COLUMN key_id TEXT;
    ALTER TABLE usage ADD COLUMN project TEXT;
    ALTER TABLE usage ADD COLUMN department TEXT;
    ALTER TABLE usage ADD COLUMN user TEXT;
    ALTER TABLE usage ADD COLUMN tags TEXT;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
