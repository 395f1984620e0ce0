"""Content retention per project: nothing (the default), the request's shape only, or the full
request and answer sealed with a key from the vault; purged after the project's period.

- `settings`: project → `Retain(mode, days)` in memory, loaded with the catalog.
- `shape`: the metadata record, with no content in it.
- `sealing`: AES-256-GCM under the data key in vault entry `retention/key`.
- `capture`: a finished request → one `contents` row on the group-commit writer.
- `purge`: the hourly background job that deletes what is due.
- `read`: records opened for the admin API, which audits every read.

This package's `__init__` imports only `settings`: `gateway.calls` imports it for `Retain`.
"""

from gateway.retention.settings import FULL, METADATA, MODES, NONE, Retain, load_settings

__all__ = ["FULL", "METADATA", "MODES", "NONE", "Retain", "load_settings"]
