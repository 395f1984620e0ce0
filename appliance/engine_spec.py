"""How each enabled local model's engine is run: its command, environment, port and log.

One derivation for both ways an engine runs: as a child of `aigw up` (the supervisor) and as
the systemd unit `aigw-engine@NAME.service`, whose `ExecStart` is `aigw engines exec NAME`.
The port is chosen once, at the engine's first start, and kept in `local_models.port`, so the
gateway and a unit agree on it without talking to each other.
"""

from __future__ import annotations

import os
import socket

import sqlite_utils

from appliance.config import Config
from appliance.errors import ConflictError, NotFoundError
from appliance.store import transaction
from gateway.local_models import checked_enabled_models, local_model
from inference.engine_args import engine_command, engine_environment, ensure_cache_dirs
from inference.manifest import MANIFEST_NAME, Manifest
from inference.supervisor import EngineSpec


class EngineSpecError(RuntimeError):
    """An enabled model whose engine cannot be started; the message says why."""


def _listening_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def engine_port(db: sqlite_utils.Database, cfg: Config, name: str) -> int:
    """The model's engine port: the one it had, else the first free one of the range."""
    i = cfg.inference
    with transaction(db):
        row = db.execute("SELECT port FROM local_models WHERE name = ?", [name]).fetchone()
        if row is None:
            raise EngineSpecError(f"no local model named {name!r}")
        if row[0] is not None:
            return int(row[0])
        taken = {r[0] for r in db.execute("SELECT port FROM local_models WHERE port IS NOT NULL")}
        for port in range(i.port_base, i.port_base + i.port_count):
            if port not in taken and _listening_free(port):
                db.execute("UPDATE local_models SET port = ? WHERE name = ?", [port, name])
                return port
    raise EngineSpecError(
        f"no free port for an engine in {i.port_base}-{i.port_base + i.port_count - 1}; "
        "widen [inference] port_count"
    )


def engine_spec(
    cfg: Config,
    db: sqlite_utils.Database,
    manifest: Manifest,
    gpu_count: int,
    device: str,
) -> EngineSpec:
    """The engine of one enabled model, or EngineSpecError saying why it cannot run."""
    name = manifest.name
    folder = cfg.models_dir / name
    if not (folder / MANIFEST_NAME).is_file():
        raise EngineSpecError(f"its folder {folder} is missing; import it again")
    python = cfg.engine_python
    if not python.is_file():
        raise EngineSpecError(
            f"vLLM's environment is not installed: {python} does not exist (build one with "
            "`python -m inference.engine_env build DIR`, then set [inference] engine_python "
            "or AIGW_ENGINE_PYTHON to DIR/bin/python)"
        )
    port = engine_port(db, cfg, name)
    cache = cfg.state_dir / "engine-cache" / name
    logs = cfg.state_dir / "logs"
    ensure_cache_dirs(cache)
    logs.mkdir(parents=True, exist_ok=True)
    argv = engine_command(
        manifest,
        folder,
        port,
        python=python,
        gpu_count=gpu_count,
        device=device,
        cfg=cfg.inference,
    )
    return EngineSpec(
        name=name,
        argv=tuple(argv),
        env=engine_environment(cache, device, os.environ, cfg.inference.cpu_cores),
        port=port,
        served_name=name,
        log_path=logs / f"engine-{name}.log",
        cwd=cache,
    )


def enabled_engines(
    cfg: Config, db: sqlite_utils.Database, gpu_count: int, device: str
) -> tuple[dict[str, EngineSpec], dict[str, str]]:
    """The engines of every enabled model, and why the others cannot run."""
    models, problems = checked_enabled_models(db, cfg.models_dir)
    specs: dict[str, EngineSpec] = {}
    for model in models:
        try:
            specs[model.name] = engine_spec(cfg, db, model.manifest, gpu_count, device)
        except EngineSpecError as exc:
            problems[model.name] = str(exc)
    return specs, problems


def model_spec(
    cfg: Config, db: sqlite_utils.Database, name: str, gpu_count: int, device: str
) -> EngineSpec:
    """One enabled model's engine (for `aigw engines exec NAME`)."""
    try:
        model = local_model(db, cfg.models_dir, name)
    except NotFoundError:
        raise EngineSpecError(
            f"no local model named {name!r}; `aigw models status` lists them"
        ) from None
    except ConflictError as exc:  # a manifest spoilt by hand
        raise EngineSpecError(str(exc)) from None
    if not model.enabled:
        raise EngineSpecError(f"local model {name!r} is not enabled (`aigw models enable`)")
    return engine_spec(cfg, db, model.manifest, gpu_count, device)
