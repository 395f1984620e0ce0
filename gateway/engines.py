"""The engines behind the provider `local`: vLLM servers on this box and elsewhere on the LAN.

Every served model of a ready engine is a replica in the `EnginePool`. The `local` provider is
one adapter (one pooled session) that sends each request to the least-loaded ready replica of
its model, read from the engines' own `/metrics` (requests waiting and running, KV-cache use)
as their watchers last scraped them. An engine that stops leaves the pool at once, so the next
request goes to another replica or, when none is left, fails over to the route's next
deployment, or gets a clear 503 with a Retry-After.

Which models exist does not depend on readiness: an enabled local model or a registered remote
engine is an alias (a route with the one deployment `local/NAME`) from the moment it is
configured, so a client calling it while its engine starts is told to retry rather than that
the model does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sqlite_utils

from gateway.catalog import ProviderDef
from gateway.errors import ServiceUnavailable
from gateway.local_models import enabled_models
from gateway.providers.base import Timeouts
from gateway.providers.openai import OpenAIAdapter
from gateway.routing.model import Deployment, Route

LOCAL = "local"  # the provider name of every engine, in the ledger, prices and routes
ENGINE_UNAVAILABLE = "engine_unavailable"
_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}


class Load(Protocol):
    """What an engine's `/metrics` said last (inference.vllm_metrics.EngineLoad)."""

    @property
    def kv_cache_usage(self) -> float | None: ...
    @property
    def running(self) -> int: ...
    @property
    def waiting(self) -> int: ...


class LoadSource(Protocol):
    """Whatever watches an engine: its latest load, or None before the first scrape."""

    @property
    def load(self) -> Load | None: ...


@dataclass(slots=True, eq=False)
class Replica:
    """One ready engine serving one model."""

    key: str  # "engine:NAME" (this box) or "remote:NAME"
    model: str  # the served model name: what the `local` deployment's upstream model is
    base_url: str  # ".../v1"
    kind: str  # "local" or "remote"
    source: LoadSource | None = None
    api_key: str | None = None
    urls: dict[str, str] = field(init=False)
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        root = self.base_url.rstrip("/")
        self.urls = {endpoint: root + path for endpoint, path in _PATHS.items()}
        self.headers = {"Content-Type": "application/json"}
        if self.api_key:
            self.headers["Authorization"] = "Bearer " + self.api_key

    def score(self) -> tuple[int, float]:
        """Lower is less loaded: requests queued and running, then KV-cache use."""
        load = self.source.load if self.source is not None else None
        if load is None:
            return 0, 0.0
        return load.waiting + load.running, load.kv_cache_usage or 0.0


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model the box serves through `local`, ready or not: an alias clients can call."""

    name: str
    context_window: int | None
    origin: str  # "store" (an enabled local model) or "remote"


class EnginePool:
    """The ready replicas by model; changed by the engines' watchers, read per request."""

    def __init__(self) -> None:
        self._by_model: dict[str, list[Replica]] = {}
        self._by_key: dict[str, Replica] = {}
        self._turn = 0  # rotates ties, so equally idle replicas share the work

    def up(self, replica: Replica) -> None:
        """A replica became ready (or changed address): it takes requests from now on."""
        self.down(replica.key)
        self._by_key[replica.key] = replica
        self._by_model.setdefault(replica.model, []).append(replica)

    def down(self, key: str) -> bool:
        """A replica stopped: out of routing at once. False when it was not in the pool."""
        replica = self._by_key.pop(key, None)
        if replica is None:
            return False
        rest = [r for r in self._by_model.get(replica.model, ()) if r is not replica]
        if rest:
            self._by_model[replica.model] = rest
        else:
            self._by_model.pop(replica.model, None)
        return True

    def ready(self, model: str) -> bool:
        """Whether a model has a ready replica."""
        return model in self._by_model

    def replicas(self, model: str | None = None) -> list[Replica]:
        """The ready replicas (of one model)."""
        if model is None:
            return list(self._by_key.values())
        return list(self._by_model.get(model, ()))

    def pick(self, model: str) -> Replica | None:
        """The least-loaded ready replica of a model, or None when none is ready."""
        replicas = self._by_model.get(model)
        if not replicas:
            return None
        if len(replicas) == 1:
            return replicas[0]
        self._turn += 1
        n = len(replicas)
        order = [replicas[(self._turn + i) % n] for i in range(n)]
        return min(order, key=Replica.score)


class LocalAdapter(OpenAIAdapter):
    """The provider `local`: vLLM's OpenAI-compatible API, on the least-loaded replica."""

    def __init__(self, pool: EnginePool, timeouts: Timeouts) -> None:
        super().__init__(ProviderDef(LOCAL, "openai", "http://127.0.0.1"), timeouts)
        self.pool = pool
        self._starting: Mapping[str, str] = {}
        # No key of its own: each replica carries its headers (see `url`). An empty key would
        # make `has_credential` false, so the adapter holds an always-ready marker instead.
        self.set_credential(LOCAL, "")

    @property
    def token_limit_field(self) -> str:
        """vLLM takes `max_tokens`."""
        return "max_tokens"

    def auth_headers(self, key: str) -> dict[str, str]:
        """Per replica instead (see `post`)."""
        return {}

    def describe_waiting(self, states: Mapping[str, str]) -> None:
        """What to tell a client while a model has no ready replica (model → engine state)."""
        self._starting = states

    def unavailable(self, model: str) -> ServiceUnavailable:
        """The 503 for a model without a ready replica: what its engine is doing, retry soon."""
        state = self._starting.get(model, "not running")
        return ServiceUnavailable(
            f"the engine serving local model {model!r} is not ready ({state}); "
            "retry in a few seconds",
            code=ENGINE_UNAVAILABLE,
            retry_after=5,
        )

    def url(self, endpoint: str, upstream_model: str) -> str:
        """The URL of the least-loaded ready replica; none ready is a 503 to retry."""
        replica = self.pool.pick(upstream_model)
        if replica is None:
            raise self.unavailable(upstream_model)
        if endpoint not in replica.urls:
            raise ServiceUnavailable(
                f"local engines do not serve the {endpoint} endpoint", code=ENGINE_UNAVAILABLE
            )
        # The replica's own headers (a remote engine may want a key) for the `post` that
        # follows: the dispatcher calls it next, with no await between, so requests to other
        # replicas cannot swap them in between.
        self._headers = replica.headers
        return replica.urls[endpoint]


def served_routes(models: Iterable[ServedModel]) -> dict[str, Route]:
    """One route per served model: the alias is the model's name, its one deployment
    `local/NAME`, trusted with confidential data (it never leaves the company)."""
    routes: dict[str, Route] = {}
    for m in models:
        dep = Deployment(
            id=f"{LOCAL}/{m.name}",
            route=m.name,
            provider=LOCAL,
            upstream_model=m.name,
            context_window=m.context_window,
            confidential=True,
        )
        routes[m.name] = Route(m.name, "priority", (dep,))
    return routes


def load_served(db: sqlite_utils.Database, models_dir: Path) -> dict[str, ServedModel]:
    """The models served through `local`: enabled local models and remote engines' models."""
    served: dict[str, ServedModel] = {}
    for row in db.query("SELECT model FROM remote_engines WHERE enabled = 1 ORDER BY name"):
        served[row["model"]] = ServedModel(row["model"], None, "remote")
    for model in enabled_models(db, models_dir):  # a hand-spoilt manifest is logged, left out
        m = model.manifest
        served[m.name] = ServedModel(m.name, m.engine.max_model_len or m.context_length, "store")
    return served


def load_to_dict(load: Load | None) -> dict[str, Any]:
    """An engine's load as the admin API shows it."""
    if load is None:
        return {"kv_cache_usage": None, "running": None, "waiting": None}
    return {"kv_cache_usage": load.kv_cache_usage, "running": load.running, "waiting": load.waiting}
