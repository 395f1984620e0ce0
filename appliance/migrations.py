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
    # 4: cost governance: prices, the ledger's cost, rollups, budgets, limits, alerts, outcomes.
    """
    -- Prices per million tokens in micro-units of `currency`. `provider` is a provider of this
    -- box's catalog, or a vendor ('openai', 'anthropic', 'google', 'deepseek', 'qwen',
    -- 'moonshot', 'zhipu', 'local'); the newest row whose effective_from has passed applies.
    CREATE TABLE prices (
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        effective_from TEXT NOT NULL,
        currency TEXT NOT NULL,
        input_micros INTEGER NOT NULL,
        output_micros INTEGER NOT NULL,
        cached_micros INTEGER,
        request_micros INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        PRIMARY KEY (provider, model, effective_from)
    );
    -- The usage table is the ledger: one row per request.
    ALTER TABLE usage ADD COLUMN cost_micros INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN priced INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE usage ADD COLUMN cache_hit INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN deployment TEXT;
    -- Hourly sums by dimension, kept in step with the ledger in the same transactions.
    CREATE TABLE rollups (
        hour TEXT NOT NULL,
        department TEXT NOT NULL,
        project TEXT NOT NULL,
        user TEXT NOT NULL,
        key_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cost_micros INTEGER NOT NULL,
        PRIMARY KEY (hour, department, project, user, key_id, provider, model)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_tags (
        hour TEXT NOT NULL,
        tag TEXT NOT NULL,
        department TEXT NOT NULL,
        project TEXT NOT NULL,
        requests INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_micros INTEGER NOT NULL,
        PRIMARY KEY (hour, tag, department, project)
    ) WITHOUT ROWID;
    CREATE TABLE budgets (
        id TEXT PRIMARY KEY,
        level TEXT NOT NULL CHECK (level IN ('department', 'project', 'user', 'key')),
        target TEXT NOT NULL,
        period TEXT NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly', 'total')),
        limit_micros INTEGER NOT NULL CHECK (limit_micros >= 0),
        hard INTEGER NOT NULL DEFAULT 1,
        thresholds TEXT NOT NULL DEFAULT '[50, 80, 100]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (level, target, period)
    );
    ALTER TABLE departments ADD COLUMN rpm INTEGER;
    ALTER TABLE departments ADD COLUMN tpm INTEGER;
    ALTER TABLE projects ADD COLUMN rpm INTEGER;
    ALTER TABLE projects ADD COLUMN tpm INTEGER;
    ALTER TABLE users ADD COLUMN rpm INTEGER;
    ALTER TABLE users ADD COLUMN tpm INTEGER;
    -- What a project does with a model that has no price: 'refuse', 'allow' (at zero, with an
    -- alert), or 'auto' (refuse where a hard budget applies, else allow).
    ALTER TABLE projects ADD COLUMN unpriced TEXT NOT NULL DEFAULT 'auto'
        CHECK (unpriced IN ('auto', 'refuse', 'allow'));
    CREATE TABLE suspensions (
        id INTEGER PRIMARY KEY,
        level TEXT NOT NULL CHECK (level IN ('project', 'key')),
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL,
        lifted_at TEXT,
        lifted_by TEXT
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
        subject TEXT NOT NULL,
        dedup_key TEXT NOT NULL UNIQUE,
        message TEXT NOT NULL,
        details TEXT,
        acknowledged_at TEXT,
        acknowledged_by TEXT
    );
    -- A webhook's URL is a secret (Slack's carry a token): it lives in the vault as
    -- 'webhook/<id>'; `display` is a redacted form for listings.
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        format TEXT NOT NULL CHECK (format IN ('json', 'slack')),
        display TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    );
    CREATE TABLE alert_deliveries (
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        webhook_id TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
        next_at TEXT,
        last_error TEXT,
        PRIMARY KEY (alert_id, webhook_id)
    );
    -- Business value attached to a trace id or a tag, for the cost-against-value report.
    CREATE TABLE outcomes (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        trace_id TEXT,
        tag TEXT,
        business_line TEXT NOT NULL,
        value_micros INTEGER NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        CHECK ((trace_id IS NULL) != (tag IS NULL))
    );
    CREATE INDEX outcomes_trace ON outcomes(trace_id);
    """,
    # 5: routes: an alias served by a list of deployments and a strategy; routing in the ledger.
    """
    CREATE TABLE routes (
        alias TEXT PRIMARY KEY,
        strategy TEXT NOT NULL
            CHECK (strategy IN ('priority', 'weighted', 'least_latency', 'cheapest')),
        fallback_alias TEXT,
        tiers TEXT NOT NULL DEFAULT '[]',
        max_attempts INTEGER NOT NULL DEFAULT 3,
        max_seconds REAL NOT NULL DEFAULT 30,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE deployments (
        id TEXT PRIMARY KEY,
        route TEXT NOT NULL REFERENCES routes(alias) ON DELETE CASCADE,
        provider TEXT NOT NULL REFERENCES providers(name),
        upstream_model TEXT NOT NULL,
        position INTEGER NOT NULL,
        weight INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 0),
        params TEXT NOT NULL DEFAULT '{}',
        context_window INTEGER,
        tools INTEGER NOT NULL DEFAULT 1,
        vision INTEGER NOT NULL DEFAULT 0,
        json_mode INTEGER NOT NULL DEFAULT 1,
        confidential INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        UNIQUE (route, position)
    );
    ALTER TABLE projects ADD COLUMN context_trim INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN route_reason TEXT;
    ALTER TABLE usage ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE usage ADD COLUMN saved_micros INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: data safety: masking rules per project, the ledger's hash chain, content retention.
    """
    -- What a project does when a detector fires: allow, mask (reversible placeholders), redact
    -- or block. A custom detector ('custom:NAME') carries its own pattern or word list.
    CREATE TABLE masking_rules (
        project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
        detector TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('allow', 'mask', 'redact', 'block')),
        pattern TEXT,
        words TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project, detector)
    );
    -- A request in which a detector fired goes only to deployments trusted with confidential
    -- data when the project says so.
    ALTER TABLE projects ADD COLUMN sensitive_to_trusted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE projects ADD COLUMN retention TEXT NOT NULL DEFAULT 'none'
        CHECK (retention IN ('none', 'metadata', 'full'));
    ALTER TABLE projects ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 30
        CHECK (retention_days >= 1);
    -- Which detectors fired (names only, never values), comma-separated.
    ALTER TABLE usage ADD COLUMN detectors TEXT;
    -- The ledger's hash chain: SHA-256 over the previous row's hash and this row's fields.
    ALTER TABLE usage ADD COLUMN hash TEXT;
    -- Retained content: `body` is the request's content record, encrypted with the vault
    -- entry `sealed_with` (metadata-only records are not encrypted); purged after `purge_after`.
    CREATE TABLE contents (
        id INTEGER PRIMARY KEY,
        trace_id TEXT NOT NULL,
        ts TEXT NOT NULL,
        project TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('metadata', 'full')),
        sealed_with TEXT,
        body BLOB NOT NULL,
        purge_after TEXT NOT NULL
    );
    CREATE INDEX contents_trace ON contents(trace_id);
    CREATE INDEX contents_purge ON contents(purge_after);
    """,
    # 7: local inference. The model store's index (the files and manifest live in the state
    # directory), the Ed25519 keys whose bundles the box accepts, and vLLM servers elsewhere on
    # the network that are watched and routed to like the box's own engines.
    """
    CREATE TABLE local_models (
        name TEXT PRIMARY KEY,
        format TEXT NOT NULL,
        manifest TEXT NOT NULL,
        source TEXT NOT NULL,
        signed_by TEXT,
        enabled INTEGER NOT NULL DEFAULT 0,
        -- The engine's port on 127.0.0.1, kept from its first start: the gateway and a
        -- systemd unit (aigw-engine@NAME) agree on it without talking to each other.
        port INTEGER UNIQUE,
        imported_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE trusted_keys (
        name TEXT PRIMARY KEY,
        public_key TEXT NOT NULL UNIQUE,
        added_at TEXT NOT NULL
    );
    -- The box's engines are the built-in provider `local` (routes and models refer to it).
    INSERT OR IGNORE INTO providers (name, kind, base_url, created_at)
        VALUES ('local', 'openai', 'http://127.0.0.1', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));
    CREATE TABLE remote_engines (
        name TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        model TEXT NOT NULL,
        api_key_env TEXT,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
