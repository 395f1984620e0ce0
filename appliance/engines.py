"""The box's engines inside `aigw up`: one vLLM server per enabled local model, and the remote
engines an administrator registered, kept in step with the database and with the gateway.

On every catalog reload (an `aigw models enable`, a new remote engine, ...) the wanted engines
are worked out again and the supervisor and the remote watcher are reconciled to them. A
ready engine becomes a replica of the provider `local` in the gateway's engine pool; one that
stops leaves it at once (before its restart is even scheduled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from appliance.config import Config
from appliance.engine_spec import enabled_engines
from appliance.engine_units import SystemdEngines, UnitEngine
from gateway.engines import Replica, load_to_dict
from gateway.state import Gateway
from inference.engine_args import resolve_device
from inference.remote import RemoteEngine, RemoteSpec, RemoteWatcher
from inference.supervisor import Engine, EngineSpec, Supervisor

log = logging.getLogger(__name__)


class EngineManager:
    """Reconciles engines with the configuration and reports their state."""

    def __init__(
        self,
        cfg: Config,
        gw: Gateway,
        gpu_count: int,
        systemctl: Sequence[str] = ("systemctl",),
    ) -> None:
        self.cfg = cfg
        self.gw = gw
        self.gpu_count = gpu_count
        self.device = resolve_device(cfg.inference.device, gpu_count)
        self.supervisor: Supervisor | SystemdEngines
        if cfg.inference.supervisor == "systemd":  # the box: aigw-engine@NAME.service
            self.supervisor = SystemdEngines(
                cfg.inference, on_ready=self._ready, on_down=self._down, systemctl=systemctl
            )
        else:
            self.supervisor = Supervisor(cfg.inference, on_ready=self._ready, on_down=self._down)
        self.remote = RemoteWatcher(
            cfg.inference.watch_interval_s, on_ready=self._remote_ready, on_down=self._remote_down
        )
        self.problems: dict[str, str] = {}  # model → why it cannot be started at all
        self._lock = asyncio.Lock()
        self._pending: asyncio.Task[None] | None = None
        self._metrics: EngineMetrics | None = None

    async def start(self) -> None:
        """Start what is enabled and follow every later change of the catalog."""
        self.gw.engine_states = self.states
        self.gw.engine_report = self.report
        self._metrics = EngineMetrics(self)
        self.gw.metrics.registry.register(self._metrics)  # type: ignore[arg-type]
        self.gw.on_reload.append(self._schedule)
        await self.reconcile()

    async def stop(self) -> None:
        """Stop every engine (SIGTERM, then SIGKILL after the stop timeout) and every watch."""
        if self._schedule in self.gw.on_reload:
            self.gw.on_reload.remove(self._schedule)
        if self._metrics is not None:
            self.gw.metrics.registry.unregister(self._metrics)  # type: ignore[arg-type]
            self._metrics = None
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pending
        async with self._lock:
            await self.supervisor.stop_all()
            await self.remote.stop()

    def _schedule(self) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self.reconcile())

    async def reconcile(self) -> None:
        """Start, stop and restart engines to match the database."""
        async with self._lock:
            try:
                local, remote = self._wanted()
                await self.supervisor.reconcile(local)
                await self.remote.reconcile(remote)
            except Exception:  # a reconcile must never take the gateway down
                log.exception("engines could not be reconciled with the configuration")
            self.gw.local_adapter.describe_waiting(self.states())

    def _wanted(self) -> tuple[dict[str, EngineSpec], dict[str, RemoteSpec]]:
        db = self.gw.db
        local, problems = enabled_engines(self.cfg, db, self.gpu_count, self.device)
        remote: dict[str, RemoteSpec] = {}
        for row in db.query("SELECT * FROM remote_engines WHERE enabled = 1"):
            env = row["api_key_env"]
            key = os.environ.get(env) if env else None
            remote[row["name"]] = RemoteSpec(row["name"], row["url"], row["model"], key)
        for name, why in problems.items():
            if self.problems.get(name) != why:
                log.error("local model %s cannot be started: %s", name, why)
        self.problems = problems
        return local, remote

    def report(self) -> list[dict[str, Any]]:
        """Every engine, local and remote, with its state and load: what `GET /admin/v1/engines`,
        `aigw engines list`, `aigw gpus` and /metrics show."""
        rows: list[dict[str, Any]] = []
        for name, why in sorted(self.problems.items()):
            rows.append(_row(name, name, "local", "failed", None, why))
        engines: dict[str, Engine | UnitEngine] = dict(self.supervisor.engines())
        for name, e in sorted(engines.items()):
            state = str(e.state)
            row = _row(name, e.spec.served_name, "local", state, e.base_url, e.last_error)
            row.update(pid=e.pid, port=e.spec.port, restarts=e.restarts, device=self.device)
            row.update(load_to_dict(getattr(e, "load", None)))
            rows.append(row)
        for name, r in sorted(self.remote.engines().items()):
            row = _row(name, r.spec.model, "remote", r.state, r.base_url, r.last_error)
            row.update(max_model_len=r.max_model_len, checked_at=_utc(r.checked_at))
            row.update(load_to_dict(r.load))
            rows.append(row)
        return rows

    def states(self) -> dict[str, str]:
        """Each served model's engine state, as the admin API and clients' 503s say it."""
        out: dict[str, str] = {name: f"failed: {why}" for name, why in self.problems.items()}
        for engine in self.supervisor.engines().values():
            state = str(engine.state)
            if engine.last_error and state != "ready":
                state += f": {engine.last_error}"
            out[engine.spec.served_name] = state
        for r in self.remote.engines().values():
            if r.spec.model not in out or r.state == "ready":
                out[r.spec.model] = f"remote {r.state}" + (
                    f": {r.last_error}" if r.last_error else ""
                )
        return out

    # The watchers' callbacks: the pool changes at once, and the deployment's circuit is
    # cleared when an engine comes back, so what the old process did is not held against it.
    def _ready(self, engine: Engine | UnitEngine) -> None:
        model = engine.spec.served_name
        self.gw.engines.up(
            Replica(f"engine:{engine.spec.name}", model, engine.base_url, "local", engine)
        )
        self.gw.health.reset(f"local/{model}")
        self.gw.local_adapter.describe_waiting(self.states())
        log.info("engine %s is ready on %s", engine.spec.name, engine.base_url)

    def _down(self, engine: Engine | UnitEngine) -> None:
        if self.gw.engines.down(f"engine:{engine.spec.name}"):
            log.warning("engine %s is down; out of routing", engine.spec.name)
        self.gw.local_adapter.describe_waiting(self.states())

    def _remote_ready(self, engine: RemoteEngine) -> None:
        s = engine.spec
        self.gw.engines.up(
            Replica(f"remote:{s.name}", s.model, s.base_url, "remote", engine, s.api_key)
        )
        self.gw.health.reset(f"local/{s.model}")
        self.gw.local_adapter.describe_waiting(self.states())

    def _remote_down(self, engine: RemoteEngine) -> None:
        self.gw.engines.down(f"remote:{engine.spec.name}")
        self.gw.local_adapter.describe_waiting(self.states())


def _utc(wall: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall)) if wall is not None else None


def _row(
    name: str, model: str, kind: str, state: str, url: str | None, error: str
) -> dict[str, Any]:
    return {
        "name": name,
        "model": model,
        "kind": kind,
        "state": state,
        "url": url,
        "error": error or None,
    }


class EngineMetrics:
    """Engines on /metrics: readiness, load and restarts of local and remote engines alike."""

    def __init__(self, manager: EngineManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        """Read when /metrics is scraped, from what the watchers last saw."""
        labels = ["engine", "model", "kind"]
        ready = GaugeMetricFamily(
            "aigw_engine_ready", "1 while the engine takes requests", labels=labels
        )
        kv = GaugeMetricFamily(
            "aigw_engine_kv_cache_usage_ratio", "KV-cache use (0-1), from vLLM", labels=labels
        )
        running = GaugeMetricFamily(
            "aigw_engine_requests_running", "requests running, from vLLM", labels=labels
        )
        waiting = GaugeMetricFamily(
            "aigw_engine_requests_waiting", "requests queued, from vLLM", labels=labels
        )
        restarts = CounterMetricFamily(
            "aigw_engine_restarts", "restarts of a local engine by the supervisor", labels=labels
        )
        for row in self.manager.report():
            values = [row["name"], row["model"], row["kind"]]
            ready.add_metric(values, 1.0 if row["state"] == "ready" else 0.0)
            for family, key in ((kv, "kv_cache_usage"), (running, "running"), (waiting, "waiting")):
                if row.get(key) is not None:
                    family.add_metric(values, float(row[key]))
            if row["kind"] == "local" and "restarts" in row:
                restarts.add_metric(values, float(row["restarts"]))
        yield from (ready, kv, running, waiting, restarts)
