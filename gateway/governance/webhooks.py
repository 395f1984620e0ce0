"""Webhooks: where alerts are delivered, as generic JSON or as a Slack-compatible message.

A webhook's URL is a secret (a Slack incoming-webhook URL is its own credential), so it lives
in the vault as `webhook/<id>`; the table keeps a redacted `display` for listings. The URL is
read from the vault at the moment of sending and never logged, stored elsewhere or put in an
error message: a failure is described by its HTTP status or the kind of error.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from appliance.store import transaction, utcnow
from appliance.vault import Vault, VaultError, VaultSealed
from gateway.catalog import bump_version
from gateway.errors import InvalidRequest
from gateway.tenancy import _checks
from gateway.tenancy.audit import record

FORMATS = ("json", "slack")
MAX_URL = 2048
_SLACK_HEADER_MAX = 150
_SLACK_TEXT_MAX = 3000
_EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}


class DeliveryError(Exception):
    """A delivery attempt failed; the message is safe to store and log (never the URL)."""


def secret_id(webhook_id: str) -> str:
    """The vault id of a webhook's URL."""
    return f"webhook/{webhook_id}"


def redact(url: str) -> str:
    """What a listing may show of a URL: scheme and host only."""
    parts = urlsplit(url)
    tail = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname}{tail}"


# --- bodies -------------------------------------------------------------------------------


def json_body(alert: dict[str, Any]) -> dict[str, Any]:
    """The generic body: `{"alert": {id, ts, kind, severity, subject, message, details, ...}}`."""
    return {"alert": alert}


def slack_body(alert: dict[str, Any], box: str = "aigw") -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (notifications, fallback) and Block Kit blocks."""
    severity, kind = alert["severity"], alert["kind"]
    emoji = _EMOJI.get(severity, ":bell:")
    title = f"{emoji} {kind.replace('_', ' ')}: {alert['subject']}"[:_SLACK_HEADER_MAX]
    return {
        "text": f"{emoji} [{severity}] {alert['message']}"[:_SLACK_TEXT_MAX],
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert["message"][:3000]}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"*{severity}* · {box} · alert {alert['id']} · {alert['ts']}",
                    }
                ],
            },
        ],
    }


def body_for(fmt: str, alert: dict[str, Any], box: str) -> dict[str, Any]:
    """The request body of a webhook of format `fmt`."""
    return slack_body(alert, box) if fmt == "slack" else json_body(alert)


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], timeout: float
) -> None:
    """One delivery attempt; DeliveryError (with a URL-free reason) unless the answer is 2xx."""
    try:
        async with session.post(
            url, json=body, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as resp:
            await resp.read()
            if not 200 <= resp.status < 300:
                raise DeliveryError(f"HTTP {resp.status}")
    except TimeoutError:
        raise DeliveryError(f"no answer within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"connection failed ({type(exc).__name__})") from None


def read_url(vault: Vault | None, webhook_id: str) -> str:
    """A webhook's URL from the vault, or a DeliveryError that says why it cannot be had."""
    if vault is None:
        raise DeliveryError("this gateway runs without a vault")
    try:
        url = vault.get(secret_id(webhook_id))
    except VaultSealed:
        raise DeliveryError("the vault is sealed") from None
    except VaultError:
        raise DeliveryError("the URL cannot be read from the vault") from None
    if url is None:
        raise DeliveryError("the vault holds no URL for this webhook")
    return url


async def send_test(
    vault: Vault | None, webhook: dict[str, Any], box: str, timeout: float, ts: str
) -> None:
    """Deliver a test alert once (no retries), for `POST /webhooks/{id}/test`."""
    alert = {
        "id": 0,
        "ts": ts,
        "kind": "test",
        "severity": "info",
        "subject": f"webhook:{webhook['id']}",
        "dedup_key": f"test:{webhook['id']}:{ts}",
        "message": f"Test alert from {box} to webhook {webhook['name']!r}",
        "details": {},
    }
    url = read_url(vault, webhook["id"])
    async with aiohttp.ClientSession() as session:
        await post(session, url, body_for(webhook["format"], alert, box), timeout)


# --- the store ----------------------------------------------------------------------------


def _check_url(url: Any) -> str:
    raw = _checks.text("url", url, MAX_URL).strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in raw):
        raise InvalidRequest("'url' must be an http:// or https:// URL", param="url")
    return raw


def _vault_for_write(vault: Vault | None) -> Vault:
    if vault is None:
        raise ConflictError("this gateway runs without a vault, where webhook URLs are kept")
    if vault.sealed:
        raise ConflictError("the vault is sealed; unseal it first (`aigw vault unseal`)")
    return vault


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "enabled": bool(row["enabled"])}


def create_webhook(
    db: sqlite_utils.Database,
    vault: Vault | None,
    actor: str,
    *,
    name: str,
    format: str,
    url: str,
) -> dict[str, Any]:
    """A new webhook; its URL goes to the vault and only a redacted form to the table."""
    name = _checks.text("name", name, 128)
    if not name.strip():
        raise InvalidRequest("'name' must not be empty", param="name")
    if format not in FORMATS:
        raise InvalidRequest(f"'format' must be one of {', '.join(FORMATS)}", param="format")
    url = _check_url(url)
    v = _vault_for_write(vault)
    webhook_id = "wh_" + secrets.token_hex(6)
    row: dict[str, Any] = {
        "id": webhook_id,
        "name": name,
        "format": format,
        "display": redact(url),
        "enabled": 1,
        "created_at": utcnow(),
    }
    with transaction(db):
        db.table("webhooks").insert(row)
        try:
            v.put(secret_id(webhook_id), url)
        except VaultError as exc:
            raise ConflictError(f"cannot store the URL in the vault: {exc}") from None
        record(db, actor, "create", "webhook", webhook_id, None, row)
        bump_version(db)
    return _public(row)


def get_webhook(db: sqlite_utils.Database, webhook_id: str) -> dict[str, Any]:
    """One webhook (never its URL)."""
    rows = list(db.query("SELECT * FROM webhooks WHERE id = ?", [webhook_id]))
    if not rows:
        raise NotFoundError(f"no webhook with id {webhook_id!r}")
    return _public(rows[0])


def list_webhooks(db: sqlite_utils.Database, enabled_only: bool = False) -> list[dict[str, Any]]:
    """Webhooks, oldest first."""
    where = " WHERE enabled = 1" if enabled_only else ""
    return [_public(r) for r in db.query(f"SELECT * FROM webhooks{where} ORDER BY created_at, id")]


def delete_webhook(
    db: sqlite_utils.Database, vault: Vault | None, actor: str, webhook_id: str
) -> None:
    """Delete a webhook and its URL; deliveries already made stay in the history."""
    with transaction(db):
        before = get_webhook(db, webhook_id)
        db.execute("DELETE FROM webhooks WHERE id = ?", [webhook_id])
        db.execute(
            "UPDATE alert_deliveries SET status = 'failed', last_error = 'webhook deleted' "
            "WHERE webhook_id = ? AND status = 'pending'",
            [webhook_id],
        )
        record(db, actor, "delete", "webhook", webhook_id, before, None)
        bump_version(db)
    if vault is not None and not vault.sealed:
        vault.delete(secret_id(webhook_id))
