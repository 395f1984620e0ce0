"""Capture: a finished request of a retaining project becomes one `contents` row.

The row is queued on the group-commit writer just before the request's ledger row, so it
commits in the same transaction (or, when it alone fills a batch, in the one just before);
either way before the response is finished. 'metadata' rows hold the request's shape
(`gateway.retention.shape`) as JSON; 'full' rows hold the client's original request, the
answer it received and the metadata, sealed (`gateway.retention.sealing`). Without a usable
content key a full row is not stored at all, never in clear.

Capture never fails a request: a record that cannot be made is counted and logged, without
its content.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.vault import Vault
from appliance.writer import GroupCommitWriter
from gateway.retention.sealing import KEY_ID, ContentKey, KeyUnavailable, seal
from gateway.retention.settings import FULL, METADATA, Retain
from gateway.retention.shape import describe

if TYPE_CHECKING:
    from gateway.calls import Call

log = logging.getLogger(__name__)

_DAY = 86400
# Timestamps formatted by SQLite from epoch seconds, as the ledger's are; the sealing key's
# name goes through NULLIF so that a metadata row binds '' rather than None.
CONTENT_SQL = (
    "INSERT INTO contents (trace_id, ts, project, kind, sealed_with, body, purge_after) "
    "VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', ?, 'unixepoch'), ?, ?, NULLIF(?, ''), ?, "
    "strftime('%Y-%m-%dT%H:%M:%fZ', ?, 'unixepoch'))"
)


class Retainer:
    """Turns finished requests into `contents` rows on the writer."""

    def __init__(self, writer: GroupCommitWriter, vault: Vault | None) -> None:
        self.writer = writer
        self.key = ContentKey(vault)
        self.kept = 0  # rows queued
        self.dropped = 0  # full records not stored: no usable key
        self.failed = 0  # records that could not be made (a bug; logged)
        self._warned = False

    def prepare(self, settings: dict[str, Retain]) -> None:
        """After a reload: make the content key now if a project keeps full content, so the
        first such request does not write the vault file; drop it if the vault was sealed."""
        if any(r.mode == FULL for r in settings.values()):
            self._cipher()

    def _cipher(self) -> AESGCM | None:
        try:
            aead = self.key.cipher()
        except KeyUnavailable as exc:
            if not self._warned:  # once until the key is usable again
                self._warned = True
                log.warning("retention: full content is not being stored: %s", exc)
            return None
        self._warned = False
        return aead

    def capture(self, call: Call, retain: Retain) -> None:
        """Queue the request's `contents` row (call before its ledger row is queued)."""
        key = call.key
        if key is None:
            return
        project = key.project
        try:
            meta = describe(call)
            if retain.mode == FULL:
                aead = self._cipher()
                if aead is None:
                    self.dropped += 1
                    return
                plain = orjson.dumps(
                    {"metadata": meta, "request": call.original_body, "response": call.answer}
                )
                kind, sealed_with = FULL, KEY_ID
                body = seal(aead, plain, call.trace_id, project)
            else:
                kind, sealed_with, body = METADATA, "", orjson.dumps(meta)
        except Exception as exc:  # a bug; its type only: a message might quote content
            self.failed += 1
            log.error(
                "retention: the record of this request could not be made (%s)", type(exc).__name__
            )
            return
        now = time.time()
        params = (call.trace_id, now, project, kind, sealed_with, body, now + retain.days * _DAY)
        self.writer.insert(CONTENT_SQL, params)
        self.kept += 1
