"""Work asked for while the gateway runs and done when it next starts: a factory reset (its
marker `<state>/factory-reset.pending`) and a staged restore (`provisioning.restore`).

The admin API cannot wipe or replace the state under a running gateway: it checks the request
(the appliance id typed exactly; the archive opened and checked whole), leaves the work on disk
and stops the gateway. `finish_pending` runs first thing at the next start, before anything
reads the state, so a box stopped half-way (power cut) finishes the job at its next start too.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

from appliance.config import Config
from appliance.errors import ApplianceError, ConfigError
from provisioning.reset import ResetError, confirmation_word, factory_reset
from provisioning.restore import drop_staged, finish_interrupted_restore

PENDING_RESET = "factory-reset.pending"

log = logging.getLogger("aigw")


def reset_pending(cfg: Config) -> bool:
    """Whether a factory reset waits for the next start."""
    return (cfg.state_dir / PENDING_RESET).is_file()


def request_reset(cfg: Config, confirm: str, actor: str) -> str:
    """Leave a factory reset for the next start when `confirm` is the appliance id; returns it.

    A wrong id raises ResetError and changes nothing.
    """
    expected = confirmation_word(cfg)
    if confirm.strip() != expected:
        raise ResetError(
            f"the confirmation does not match the appliance id {expected}; nothing was changed"
        )
    doc = {
        "appliance_id": expected,
        "by": actor,
        "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    path = cfg.state_dir / PENDING_RESET
    tmp = path.with_name(f".{PENDING_RESET}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    # A restore staged before is superseded: the reset wipes everything anyway.
    drop_staged(cfg)
    return expected


def _pending_reset(cfg: Config) -> list[str]:
    """Carry out a pending factory reset; the marker was written only for the right id."""
    word = confirmation_word(cfg)  # RESET when an interrupted reset already took the identity
    try:
        result = factory_reset(cfg, word)
    except ResetError as exc:
        if reset_pending(cfg):
            raise ConfigError(f"the pending factory reset failed: {exc}") from None
        # The state is wiped; only the TPM drop-in outside it is left (a root-only file).
        log.error("factory reset: %s", exc)
        return ["factory reset done (see the error above)"]
    except OSError as exc:
        if reset_pending(cfg):
            raise ConfigError(
                f"the pending factory reset failed: {exc.strerror or exc} ({exc.filename}); "
                "it is tried again at the next start"
            ) from None
        log.error(
            "factory reset: the state is wiped, but %s: %s; remove it as root and run "
            "`systemctl daemon-reload`",
            exc.filename,
            exc.strerror or exc,
        )
        return ["factory reset done (the TPM drop-in is left, see above)"]
    return [
        f"factory reset of {result.appliance_id or 'a box without identity'} done: "
        f"{len(result.removed)} entries removed, {len(result.overwritten)} key files overwritten"
    ]


def finish_pending(cfg: Config) -> list[str]:
    """At start, before anything reads the state: a pending reset, else a staged restore."""
    if reset_pending(cfg):
        return _pending_reset(cfg)
    try:
        return [f"restore: installed {path}" for path in finish_interrupted_restore(cfg)]
    except OSError as exc:
        raise ApplianceError(
            f"the staged restore cannot be finished: {exc.strerror or exc} ({exc.filename}); "
            "it is tried again at the next start"
        ) from None
