"""The box's foundation errors: configuration, store and CLI failures an operator must fix."""

from __future__ import annotations


class ApplianceError(Exception):
    """Root of errors raised by the foundation; the message is shown to the operator as is."""


class ConfigError(ApplianceError):
    """The static configuration file is missing, unreadable or invalid."""


class StoreError(ApplianceError):
    """The SQLite store cannot be opened, migrated or written."""


class NotFoundError(ApplianceError):
    """A named object (provider, model, ...) does not exist."""


class ConflictError(ApplianceError):
    """The object already exists, or is still in use."""
