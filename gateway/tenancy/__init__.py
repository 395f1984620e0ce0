"""Tenancy: departments, projects, users, gateway keys, admin tokens and the admin audit trail.

Import the modules themselves (`gateway.tenancy.store`, `.audit`, `.secrets`): this package
re-exports nothing, so that the catalog can record audit entries without an import cycle.
"""
