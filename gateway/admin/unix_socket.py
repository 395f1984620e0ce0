"""The admin API on a UNIX socket in the state directory, for the console and local tools."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from aiohttp import web

SOCKET_NAME = "admin.sock"


async def start_admin_socket(runner: web.AppRunner, state_dir: Path) -> web.SockSite:
    """Serve `runner` (already set up) on `<state_dir>/admin.sock`, mode 0600.

    The socket is bound and chmod-ed before it listens, so no other user can connect in
    between; a stale socket left by a crash is removed first, anything else there is refused.
    """
    path = Path(state_dir) / SOCKET_NAME
    try:
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise FileExistsError(f"{path} exists and is not a socket; remove it")
        path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        site = web.SockSite(runner, sock)
        await site.start()
    except BaseException:
        sock.close()
        raise
    return site
