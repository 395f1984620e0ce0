"""The admin REST API (`/admin/v1`): tenancy, keys, catalog, admin tokens, audit and usage."""

from gateway.admin.app import build_admin_app
from gateway.admin.unix_socket import start_admin_socket

__all__ = ["build_admin_app", "start_admin_socket"]
