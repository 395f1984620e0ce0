"""Who is calling the admin API: a bearer admin token, or a trusted local peer on the socket.

Over the UNIX socket the kernel tells us the peer's uid (SO_PEERCRED): root and the gateway's
own user are trusted as admin without a token, which is how the console on tty1 gets in.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

from aiohttp import web

from gateway.admin.errors import unauthenticated
from gateway.state import Gateway
from gateway.tenancy.tokens import find_admin_token

_UCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: the actor name the audit trail records, and the role it acts with."""

    actor: str
    role: str


def peer_uid(request: web.Request) -> int | None:
    """The uid of the process at the other end of a UNIX socket; None over TCP."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(raw)[1])


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("the Authorization header must be 'Bearer <admin token>'")
    return token.strip()


def authenticate(gateway: Gateway, request: web.Request) -> Principal:
    """The caller's principal, or a 401 that says what credential is missing."""
    token = _bearer(request)
    if token is not None:
        row = find_admin_token(gateway.db, token)
        if row is None:
            raise unauthenticated("the admin token is unknown or revoked")
        return Principal(f"token:{row['id']}", row["role"])
    uid = peer_uid(request)
    if uid is not None and uid in (0, os.getuid()):
        return Principal(f"local:uid={uid}", "admin")
    raise unauthenticated(
        "the admin API needs 'Authorization: Bearer <admin token>' (create one with "
        "POST /admin/v1/admin-tokens, or from the console)"
    )
