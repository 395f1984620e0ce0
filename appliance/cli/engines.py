"""`aigw engines`: the box's vLLM engines and remote ones, their state and load; remote
engines registered by URL.

An engine's state and load live in the running gateway's memory, so `engines list` needs a
running box (or --url); registering a remote engine works either way.
"""

from __future__ import annotations

import argparse
import os
import sys

from appliance.admin_client import segment
from appliance.cli._common import Ctx, SubParsers, add_json, emit_done, emit_object, emit_rows
from appliance.errors import ApplianceError

COLUMNS = ["name", "model", "kind", "state", "url", "kv_cache", "running", "waiting", "error"]
REMOTE_COLUMNS = ["name", "model", "url", "api_key_env", "enabled", "created_at"]
_NO_BOX = (
    "no gateway is running on this box, and engines run inside it: start it (aigw up), or "
    "reach one with --url and --token"
)


def register_engines(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw engines list|remote|add-remote|remove-remote`."""
    top = sub.add_parser("engines", parents=[common], help="local and remote vLLM engines")
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser(
        "list", parents=[common], help="every engine with its state and load (running box)"
    )
    add_json(ls)
    ls.set_defaults(func=list_engines)
    remote = actions.add_parser("remote", parents=[common], help="the registered remote engines")
    add_json(remote)
    remote.set_defaults(func=list_remote)
    add = actions.add_parser(
        "add-remote", parents=[common], help="register a vLLM server elsewhere by URL"
    )
    add.add_argument("name")
    add.add_argument("engine_url", metavar="URL", help="its base URL, e.g. http://gpu-2:8000")
    add.add_argument("--model", required=True, help="the model name it serves (an alias here)")
    add.add_argument(
        "--api-key-env", help="environment variable of the gateway holding its --api-key"
    )
    add_json(add)
    add.set_defaults(func=add_remote)
    ex = actions.add_parser(
        "exec",
        parents=[common],
        help="run an enabled local model's engine in the foreground "
        "(ExecStart of aigw-engine@NAME.service)",
    )
    ex.add_argument("name")
    ex.set_defaults(func=exec_engine)
    rm = actions.add_parser("remove-remote", parents=[common], help="forget a remote engine")
    rm.add_argument("name")
    add_json(rm)
    rm.set_defaults(func=remove_remote)


def list_engines(ctx: Ctx) -> None:
    """The engines the running gateway supervises and watches."""
    if ctx.client.in_process:
        raise ApplianceError(_NO_BOX)
    rows = ctx.call("GET", "/engines")["data"]
    for r in rows:
        kv = r.get("kv_cache_usage")
        r["kv_cache"] = f"{kv * 100:.0f}%" if isinstance(kv, int | float) else None
    emit_rows(ctx, rows, COLUMNS)


def list_remote(ctx: Ctx) -> None:
    """The registered remote engines."""
    emit_rows(ctx, ctx.call("GET", "/engines/remote")["data"], REMOTE_COLUMNS)


def add_remote(ctx: Ctx) -> None:
    """Register a remote engine; the gateway starts watching it within a second."""
    a = ctx.args
    body = {"name": a.name, "url": a.engine_url, "model": a.model, "api_key_env": a.api_key_env}
    row = ctx.call("POST", "/engines/remote", body)
    emit_object(
        ctx,
        row,
        f"remote engine {row['name']} added: {row['url']} serving {row['model']}; "
        "`aigw engines list` shows when it is ready",
    )


def remove_remote(ctx: Ctx) -> None:
    """Forget a remote engine: out of routing and no longer watched."""
    ctx.call("DELETE", f"/engines/remote/{segment(ctx.args.name)}")
    emit_done(ctx, f"remote engine {ctx.args.name} removed", name=ctx.args.name)


def exec_engine(ctx: Ctx) -> None:
    """Replace this process with the model's vLLM server, derived as `aigw up` derives it (the
    same command, environment and port), so systemd supervises the engine itself."""
    from appliance.engine_spec import EngineSpecError, model_spec
    from appliance.store import open_store
    from inference.engine_args import resolve_device
    from inference.gpus import probe

    cfg, name = ctx.cfg, ctx.args.name
    gpus = len(probe().gpus)
    db = open_store(cfg.database_path)
    try:
        spec = model_spec(cfg, db, name, gpus, resolve_device(cfg.inference.device, gpus))
    except EngineSpecError as exc:
        raise ApplianceError(f"engine {name}: {exc}") from None
    finally:
        db.conn.close()
    sys.stdout.flush()
    os.chdir(spec.cwd)
    os.execve(spec.argv[0], list(spec.argv), dict(spec.env))
