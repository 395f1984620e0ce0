"""Work that needs the gateway stopped (restore, factory reset): the check, and systemctl."""

from __future__ import annotations

import subprocess
from pathlib import Path

from appliance.admin_client import box_listening, socket_path
from appliance.config import Config
from appliance.errors import ApplianceError

GATEWAY_UNIT = "aigw-gateway.service"
SYSTEMD_RUN_DIR = Path("/run/systemd/system")  # exists only when systemd is PID 1
SYSTEMCTL_TIMEOUT = 120.0  # a stop waits for in-flight requests to drain


def gateway_running(cfg: Config) -> bool:
    """True when something answers on `<state>/admin.sock` (a gateway serving this state)."""
    try:
        return box_listening(socket_path(cfg))
    except ApplianceError:
        return True  # something is there that we may not talk to: assume it is the gateway


def refuse_while_running(cfg: Config) -> None:
    """Raise when the gateway serves this state directory."""
    if gateway_running(cfg):
        raise ApplianceError(
            f"the gateway is running on {cfg.state_dir}: stop the gateway first "
            f"(systemctl stop aigw-gateway), or pass --stop-gateway; nothing was changed"
        )


def systemd_booted() -> bool:
    """Whether systemd is PID 1 here (the box), so units can be stopped and started."""
    return SYSTEMD_RUN_DIR.is_dir()


def systemctl(action: str, unit: str = GATEWAY_UNIT) -> None:
    """`systemctl ACTION UNIT` with a timeout; a failure is one line."""
    if not systemd_booted():
        raise ApplianceError(
            f"cannot {action} {unit}: systemd is not running here (stop `aigw up` yourself)"
        )
    try:
        proc = subprocess.run(
            ["systemctl", action, unit], capture_output=True, timeout=SYSTEMCTL_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ApplianceError(f"systemctl {action} {unit} failed: {exc}") from None
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise ApplianceError(f"systemctl {action} {unit} failed: {why[0]}")
