"""Engines as systemd units on the box: `aigw-engine@NAME.service`, one instance per enabled
model, started and stopped by the gateway; systemd restarts a crashed engine, keeps its logs
in the journal, and kills its whole control group on stop, so nothing is left behind.

The gateway watches each unit's engine the way it watches a remote one (its `/health`,
`/v1/models` and `/metrics` on 127.0.0.1 at the model's port), so an engine that stops leaves
routing at the first failed check. `[inference] supervisor = "systemd"` selects this; the
default runs engines as children of `aigw up` (`inference.supervisor`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from appliance.config import InferenceConfig
from inference.remote import RemoteEngine, RemoteSpec, RemoteWatcher
from inference.supervisor import EngineSpec
from inference.vllm_metrics import EngineLoad

log = logging.getLogger(__name__)
UNIT = "aigw-engine@{}.service"
SYSTEMCTL_TIMEOUT_S = 60.0


class UnitEngine:
    """One engine run by systemd, as the engine manager reads it."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.watch = RemoteEngine(
            RemoteSpec(spec.name, f"http://127.0.0.1:{spec.port}", spec.served_name)
        )
        self.pid: int | None = None
        self.restarts = 0
        self.error = ""

    @property
    def unit(self) -> str:
        """The unit's name."""
        return UNIT.format(self.spec.name)

    @property
    def state(self) -> str:
        """starting until it first answers, then ready or unreachable (systemd restarts it)."""
        if self.error:
            return "failed"
        return {"checking": "starting"}.get(self.watch.state, self.watch.state)

    @property
    def last_error(self) -> str:
        """Why it is not ready, when it is not."""
        return self.error or self.watch.last_error

    @property
    def base_url(self) -> str:
        """Its OpenAI-compatible API."""
        return self.watch.base_url

    @property
    def load(self) -> EngineLoad | None:
        """What its /metrics said last."""
        return self.watch.load


class SystemdEngines:
    """The supervisor's interface (reconcile, engines, stop_all) over systemd units."""

    def __init__(
        self,
        cfg: InferenceConfig,
        *,
        on_ready: Callable[[UnitEngine], None],
        on_down: Callable[[UnitEngine], None],
        systemctl: Sequence[str] = ("systemctl",),
    ) -> None:
        self._systemctl = tuple(systemctl)
        self._on_ready, self._on_down = on_ready, on_down
        self._units: dict[str, UnitEngine] = {}
        self._watcher = RemoteWatcher(
            cfg.watch_interval_s, on_ready=self._ready, on_down=self._down
        )

    def engines(self) -> dict[str, UnitEngine]:
        """The units by model name."""
        return dict(self._units)

    async def reconcile(self, wanted: Mapping[str, EngineSpec]) -> None:
        """Stop the units of models no longer enabled, (re)start the new and changed ones."""
        gone = [n for n, u in self._units.items() if wanted.get(n) != u.spec]
        for name in gone:
            await self._systemctl_run("stop", self._units[name])
        # Unwatched while still known, so a ready one is reported down (out of routing).
        keep = {n: u.watch.spec for n, u in self._units.items() if n not in gone}
        await self._watcher.reconcile(keep)
        for name in gone:
            del self._units[name]
        for name, spec in wanted.items():
            if name not in self._units:
                unit = UnitEngine(spec)
                self._units[name] = unit
                await self._systemctl_run("restart", unit)  # a changed spec needs a new process
        await self._watcher.reconcile({n: u.watch.spec for n, u in self._units.items()})
        for unit in self._units.values():
            await self._status(unit)

    async def stop_all(self) -> None:
        """Stop every unit and every watch."""
        for unit in self._units.values():
            await self._systemctl_run("stop", unit)
        await self._watcher.stop()
        self._units.clear()

    def _unit_of(self, engine: RemoteEngine) -> UnitEngine | None:
        unit = self._units.get(engine.spec.name)
        return unit if unit is not None and unit.watch.spec == engine.spec else None

    def _ready(self, engine: RemoteEngine) -> None:
        unit = self._unit_of(engine)
        if unit is not None:
            unit.watch = engine
            asyncio.get_running_loop().create_task(self._status(unit))
            self._on_ready(unit)

    def _down(self, engine: RemoteEngine) -> None:
        unit = self._unit_of(engine)
        if unit is not None:
            unit.watch = engine
            self._on_down(unit)

    async def _status(self, unit: UnitEngine) -> None:
        """Its main PID and systemd's restart count, for the operator."""
        out = await self._run("show", "--property=MainPID,NRestarts", unit.unit)
        if out is None:
            return
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        pid = int(props.get("MainPID", "0") or 0)
        unit.pid = pid or None
        unit.restarts = int(props.get("NRestarts", "0") or 0)

    async def _systemctl_run(self, verb: str, unit: UnitEngine) -> None:
        out = await self._run(verb, "--no-block", unit.unit)
        unit.error = "" if out is not None else f"systemctl {verb} {unit.unit} failed"
        if out is None:
            log.error("systemctl %s %s failed; see its journal", verb, unit.unit)

    async def _run(self, *args: str) -> str | None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._systemctl,
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.error("cannot run systemctl: %s", exc)
            return None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), SYSTEMCTL_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return None
        if proc.returncode != 0:
            log.error("systemctl %s: %s", " ".join(args), err.decode(errors="replace")[-500:])
            return None
        return out.decode(errors="replace")
