"""A box's state made by the normal code (first boot, store, vault, tenancy), for backup tests."""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config, load_config
from appliance.store import open_store
from appliance.vault import open_vault
from gateway import catalog
from gateway.tenancy import keys
from gateway.tenancy import store as tenancy
from provisioning.firstboot import SystemPaths, provision

# Fast scrypt for tests (the default costs 128 MiB and half a second per archive).
FAST = 2**14
PASSPHRASE = "correct horse battery staple"
PROVIDER_KEY = "sk-test-provider-secret-0123456789"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sys_paths(root: Path) -> SystemPaths:
    """First boot's host paths, kept inside the test's directory."""
    return SystemPaths(
        etc_hostname=root / "etc-hostname",
        gateway_dropin=root / "dropin" / "50-vault-kek.conf",
        systemd_creds="/nonexistent/systemd-creds",
        systemctl="/nonexistent/systemctl",
    )


@dataclass
class Box:
    """A provisioned box's config and what was put into it."""

    cfg: Config
    root: Path
    key_id: str = ""


def make_box(root: Path, *, populate: bool = True) -> Box:
    """Write a config file, run first boot, and (with `populate`) add real data and secrets."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "aigw.toml"
    path.write_text(
        f'[state]\ndir = "{root / "state"}"\n\n[server]\nport = {free_port()}\n'
        '\n[box]\nname = "testbox"\n'
    )
    cfg = load_config(str(path))
    provision(cfg, sys_paths(root))
    box = Box(cfg, root)
    if populate:
        db = open_store(cfg.database_path)
        try:
            catalog.add_provider(
                db,
                catalog.validate_provider("up", "openai", "http://127.0.0.1:9/v1", None),
            )
            tenancy.create_department(db, "test", name="eng")
            tenancy.create_project(db, "test", name="demo", department="eng")
            row, _ = keys.create_key(db, "test", name="app", project="demo")
            box.key_id = row["id"]
            db.conn.execute(
                "INSERT INTO usage (trace_id, ts, api, endpoint, model, stream, status, "
                "input_tokens, output_tokens, cached_tokens, estimated, latency_ms) "
                "VALUES ('t1', '2025-01-01T00:00:00Z', 'openai', 'chat', 'm', 0, 200, "
                "10, 20, 0, 0, 12.5)"
            )
        finally:
            db.conn.close()
        vault = open_vault(cfg)
        vault.put(catalog.provider_secret_id("up"), PROVIDER_KEY)
        vault.put("webhook/alerts", "https://hooks.example/secret-token")
        model = cfg.models_dir / "tiny"
        model.mkdir(parents=True)
        (model / "manifest.json").write_text(json.dumps({"name": "tiny", "files": []}))
    return box


def tree_hash(root: Path) -> str:
    """A digest of every name, mode and content under `root` (to prove nothing changed)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest.update(f"{path.relative_to(root)}\0{st.st_mode}\0".encode())
        if path.is_file() and not path.is_symlink():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def rows(cfg: Config, table: str) -> list[tuple[object, ...]]:
    """Every row of a table, in rowid order."""
    conn = sqlite3.connect(cfg.database_path)
    try:
        return list(conn.execute(f"SELECT * FROM {table} ORDER BY rowid"))
    finally:
        conn.close()
