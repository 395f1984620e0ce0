"""The gateway's in-memory state: the catalog snapshot, adapters, writer and metrics."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlite_utils

from appliance.config import Config
from appliance.vault import Vault, VaultError
from appliance.writer import GroupCommitWriter
from gateway.audit import HeadLogger
from gateway.auth import FailureThrottle, KeyIndex
from gateway.cache import ResponseCache
from gateway.calls import Call
from gateway.catalog import (
    ProviderDef,
    Snapshot,
    catalog_version,
    load_snapshot,
    provider_secret_id,
)
from gateway.engines import (
    LOCAL,
    EnginePool,
    LocalAdapter,
    ServedModel,
    load_served,
    served_routes,
)
from gateway.errors import ModelNotFound
from gateway.governance import BudgetExceeded, Governance
from gateway.ledger import LedgerChain, Retention, rollup_hook, start_retention
from gateway.masking import Policy, PolicyError
from gateway.masking.store import load_policies
from gateway.metrics import Metrics
from gateway.pricing import (
    ModelNotPriced,
    Price,
    PriceBook,
    seed_defaults,
    unpriced_decision,
    worst_case,
)
from gateway.providers.base import Adapter, Timeouts
from gateway.providers.registry import make_adapter
from gateway.retention import Retain, load_settings
from gateway.retention.capture import Retainer
from gateway.retention.purge import ContentPurge, start_purge
from gateway.routing import Health, Route, Router, load_routes, with_models
from gateway.tokens import estimate_prompt, prompt_bound
from inference.gpus import GpuMonitor

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0
# The ledger row, column by column, with how its parameter is bound. CPython's sqlite3 binds
# a None through a failed adapter lookup (two AttributeErrors made and dropped, ~3k
# instructions each); the gateway passes '' (or -1 for ttft) instead and SQLite restores NULL.
_LEDGER_COLUMNS = (
    # The timestamp is formatted by SQLite from epoch seconds: cheaper than datetime per request.
    ("trace_id", "?"), ("ts", "strftime('%Y-%m-%dT%H:%M:%fZ', ?, 'unixepoch')"), ("api", "?"),
    ("endpoint", "?"), ("model", "?"), ("provider", "NULLIF(?, '')"),
    ("upstream_model", "NULLIF(?, '')"), ("stream", "?"), ("status", "?"),
    ("error", "NULLIF(?, '')"), ("input_tokens", "?"), ("output_tokens", "?"),
    ("cached_tokens", "?"), ("estimated", "?"), ("latency_ms", "?"), ("ttft_ms", "NULLIF(?, -1)"),
    ("key_id", "NULLIF(?, '')"), ("project", "NULLIF(?, '')"), ("department", "NULLIF(?, '')"),
    ("user", "NULLIF(?, '')"), ("tags", "NULLIF(?, '')"), ("cost_micros", "?"), ("priced", "?"),
    ("cache_hit", "?"), ("deployment", "NULLIF(?, '')"), ("route_reason", "NULLIF(?, '')"),
    ("attempts", "?"), ("saved_micros", "?"), ("detectors", "NULLIF(?, '')"),
)  # fmt: skip
_USAGE_SQL = (
    f"INSERT INTO usage ({', '.join(c for c, _ in _LEDGER_COLUMNS)}) "
    f"VALUES ({', '.join(v for _, v in _LEDGER_COLUMNS)})"
)


def _worst(price: Price | None, prompt_tokens: int, output_tokens: int) -> int:
    return worst_case(price, prompt_tokens, output_tokens) if price is not None else 0


class Gateway:
    """Everything the hot path reads, in memory; refreshed from SQLite when the catalog changes."""

    def __init__(self, cfg: Config, db: sqlite_utils.Database, vault: Vault | None = None) -> None:
        self.cfg = cfg
        self.db = db
        self.vault = vault
        u = cfg.upstream
        self.timeouts = Timeouts(
            u.connect_timeout, u.first_byte_timeout, u.idle_timeout, u.max_retry_after
        )
        # Requests between their start and their usage row: the writer's batch waits for them.
        self.inflight = 0
        chain = LedgerChain(_USAGE_SQL)  # each row's hash, stored by the row's own INSERT
        self.writer = GroupCommitWriter(
            cfg.database_path,
            cfg.usage.batch_max,
            cfg.usage.commit_window_ms / 1000,
            lambda: self.inflight,
            on_batch=rollup_hook(chain.sql),  # hourly rollups in the rows' own transaction
            before_insert=chain.before_insert,
        )
        self.retention: Retention | None = None
        # Content retention: project → what it keeps (only projects that keep something),
        # the capture onto the writer, and the purge job.
        self.content_retention: dict[str, Retain] = {}
        self.retainer = Retainer(self.writer, vault)
        self.content_purge: ContentPurge | None = None
        self.audit_heads = HeadLogger(self.writer, cfg.audit.head_interval_s)
        self.metrics = Metrics()
        self.snapshot = Snapshot(0, {}, {})
        self.keys = KeyIndex()
        self.auth_failures = FailureThrottle()
        self.prices = PriceBook({}, {})
        self.governance: Governance | None = None  # budgets, rate limits, alerts (at start)
        # Deployment health outlives reloads: a changed route keeps what was learnt.
        self.health = Health()
        self.routes: dict[str, Route] = {}
        self.router = Router({}, self.health)
        c = cfg.cache
        self.cache = ResponseCache(c.max_bytes, c.ttl_seconds) if c.enabled else None
        self.unpriced: dict[str, str] = {}  # project → its policy for models without a price
        self._unpriced_day: dict[tuple[str, str], int] = {}  # model → UTC day it was alerted
        # Projects whose too-long chats are trimmed to fit rather than refused.
        self.context_trim: frozenset[str] = frozenset()
        # Masking policies by project, and the projects whose requests in which a detector
        # fired may only go to deployments trusted with confidential data.
        self.masking: dict[str, Policy] = {}
        self.sensitive_to_trusted: frozenset[str] = frozenset()
        self.adapters: dict[str, Adapter] = {}
        self.gpus: GpuMonitor = GpuMonitor()  # NVML, opened on the first reading
        # The box's engines (and remote ones): replicas behind the provider `local`, kept up
        # to date by their watchers; the models they serve are aliases from configuration.
        self.series = "G"  # S with GPUs (set at start from NVML and [box] series)
        self.engines = EnginePool()
        self.local_adapter = LocalAdapter(self.engines, self.timeouts)
        self.served: dict[str, ServedModel] = {}
        # Set by the engine manager of `aigw up`: model → engine state, and every engine's row.
        self.engine_states: Callable[[], dict[str, str]] = dict
        self.engine_report: Callable[[], list[dict[str, Any]]] = list
        self.on_reload: list[Callable[[], None]] = []
        # HTTPS (set by the runner when [tls] is on): reload the certificate into the live
        # context and return its fingerprint; hooks (the mDNS advertiser) get the new one.
        self.tls_reload: Callable[[], Awaitable[str]] | None = None
        self.on_tls_change: list[Callable[[str], Awaitable[None]]] = []
        self.mdns_instance = ""  # the mDNS name registered (after conflict renaming); "" if none
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the catalog, start the writer and the refresh loop."""
        self.writer.start(asyncio.get_running_loop())
        self.retention = start_retention(self.writer, self.cfg.ledger.retention_days)
        self.content_purge = start_purge(self.writer)
        self.audit_heads.start()
        seeded = seed_defaults(self.db, currency=self.cfg.box.currency)
        if seeded:
            log.info("loaded %d shipped prices", seeded)
        self.governance = Governance.load(self.db, self.cfg, self.vault)
        self.governance.start()
        self.reload()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="aigw-catalog-refresh")

    async def stop(self) -> None:
        """Stop refreshing, close upstream sessions, flush the writer."""
        if self._refresher is not None:
            self._refresher.cancel()
        for adapter in self.adapters.values():
            await adapter.close()
        await self.local_adapter.close()
        self.gpus.close()
        if self.governance is not None:
            await self.governance.stop()
        if self.retention is not None:
            await self.retention.stop()
        if self.content_purge is not None:
            await self.content_purge.stop()
        await self.audit_heads.stop()  # the final heads, before the writer closes
        self.writer.close()

    def reload(self) -> None:
        """Swap in a fresh snapshot; adapters of unchanged providers keep their sessions."""
        snap = load_snapshot(self.db)
        keys = KeyIndex.load(self.db)
        prices = PriceBook.load(self.db, snap.providers, self.cfg.box.currency)
        served = load_served(self.db, self.cfg.models_dir)
        routes = {
            **served_routes(served.values()),
            **with_models(load_routes(self.db), snap.models),
        }
        projects = self.db.execute(
            "SELECT name, unpriced, context_trim, sensitive_to_trusted, retention, retention_days "
            "FROM projects"
        ).fetchall()
        unpriced = {p[0]: p[1] for p in projects}
        context_trim = frozenset(p[0] for p in projects if p[2])
        sensitive_to_trusted = frozenset(p[0] for p in projects if p[3])
        content_retention = load_settings((p[0], p[4], p[5]) for p in projects)
        self.retainer.prepare(content_retention)  # the content key, before the first request
        try:
            masking = load_policies(self.db)
        except PolicyError as exc:  # edited by hand into something that does not compile
            log.error("masking rules not reloaded, the previous ones stay: %s", exc)
            masking = self.masking
        adapters: dict[str, Adapter] = {}
        for name, provider in snap.providers.items():
            if name == LOCAL:  # the built-in row of the box's engines: the pool's adapter
                continue
            old = self.adapters.get(name)
            if old is not None and old.provider == provider:
                adapters[name] = old
            else:
                adapters[name] = make_adapter(provider, self.timeouts)
                if old is not None:
                    asyncio.get_running_loop().create_task(old.close())
        for name, old in self.adapters.items():
            if name not in adapters and name != LOCAL:
                asyncio.get_running_loop().create_task(old.close())
        for name, adapter in adapters.items():
            adapter.set_credential(*self._credential(snap.providers[name]))
        adapters[LOCAL] = self.local_adapter  # the name is refused for configured providers
        self.snapshot, self.adapters, self.keys = snap, adapters, keys
        self.prices, self.unpriced, self.context_trim = prices, unpriced, context_trim
        self.masking, self.sensitive_to_trusted = masking, sensitive_to_trusted
        self.content_retention = content_retention
        self.routes, self.router = routes, Router(routes, self.health, prices)
        self.served = served
        if self.governance is not None:
            self.governance.reload()
        log.info(
            "configuration loaded: %d providers, %d models, %d keys",
            len(snap.providers),
            len(snap.models),
            len(keys),
        )
        for hook in self.on_reload:
            hook()

    def _credential(self, provider: ProviderDef) -> tuple[str | None, str]:
        """A provider's API key (the vault's, else its environment variable's) and, when
        there is none, what the operator should do."""
        secret_id = provider_secret_id(provider.name)
        vault = self.vault
        if vault is not None and vault.has(secret_id):
            if vault.sealed:
                return None, (
                    f"the vault is sealed, so the API key of provider {provider.name!r} cannot be "
                    "read; an administrator must unseal it (`aigw vault unseal`)"
                )
            try:
                return vault.get(secret_id), ""
            except VaultError as exc:
                log.error("cannot read provider %s's key from the vault: %s", provider.name, exc)
                return None, f"provider {provider.name!r}'s key cannot be read from the vault"
        env = provider.api_key_env
        hint = f"set {env} in the gateway's environment" if env else "configure its API key"
        return provider.api_key(), f"provider {provider.name!r} has no API key available; {hint}"

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                if catalog_version(self.db) != self.snapshot.version:
                    self.reload()
            except sqlite3.Error as exc:
                log.warning("catalog refresh failed: %s", exc)

    def resolve(self, alias: str) -> Route:
        """The route of an alias (a plain model is a one-deployment route), or a 404 that
        says where to look."""
        route = self.routes.get(alias)
        if route is None:
            raise ModelNotFound(
                f"the model {alias!r} does not exist on this gateway; "
                "GET /v1/models lists the models you can call",
                param="model",
            )
        return route

    def admit(self, call: Call, body: dict[str, Any]) -> None:
        """Price the request and pass it through governance (suspension, rate limits, budget
        reservation) before it goes upstream; raises the refusal in the client's terms."""
        key = call.key
        gov = self.governance
        if key is None or gov is None:
            return
        price = self.prices.lookup(call.provider, call.upstream_model)
        call.price, call.priced = price, True
        if price is None:
            self._unpriced(call, key.project, gov.hard_budget_applies(key))
        if not gov.needs_estimate(key):
            if call.admission is None:
                call.admission = gov.admit(key, 0, 0)
            return
        # The worst case from an upper bound of the prompt (no tokenizer on the hot path);
        # only when that does not fit a budget is the prompt counted, to admit what fits.
        output = 0 if call.endpoint == "embeddings" else self._output_ceiling(body)
        bound = prompt_bound(body)
        if call.admission is not None:  # a failover: the reservation follows the deployment
            try:
                gov.move(call.admission, _worst(price, bound, output))
            except BudgetExceeded:
                counted = estimate_prompt(body)
                if counted >= bound:
                    raise
                gov.move(call.admission, _worst(price, counted, output))
            return
        try:
            worst = worst_case(price, bound, output) if price is not None else 0  # _worst, inlined
            call.admission = gov.admit(key, worst, bound // 4 + output)
        except BudgetExceeded:
            counted = estimate_prompt(body)
            if counted >= bound:
                raise
            call.admission = gov.admit(key, _worst(price, counted, output), counted + output)

    def admit_cached(self, call: Call) -> None:
        """A cache hit still counts against the caller's rate limits; it reserves nothing."""
        if call.key is not None and self.governance is not None:
            call.admission = self.governance.admit(call.key, 0, 0)

    def _output_ceiling(self, body: dict[str, Any]) -> int:
        """The most output tokens a request can produce: its own limit, else the ceiling."""
        ceiling = self.cfg.budgets.reserve_output_ceiling
        for name in ("max_completion_tokens", "max_tokens"):
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return min(value, ceiling) if name == "max_tokens" else value
        return ceiling

    def _unpriced(self, call: Call, project: str, hard: bool) -> None:
        """A model without a price: refused, or allowed at zero with one alert a day."""
        policy = self.unpriced.get(project, "auto")
        if unpriced_decision(policy, hard) == "refuse":
            raise ModelNotPriced.for_model(call.model, call.provider, call.upstream_model)
        call.priced = False
        if self.governance is None:
            return
        day = int(time.time() // 86400)  # the UTC day
        model = (call.provider, call.upstream_model)
        if self._unpriced_day.get(model) == day:
            return  # alerted today already (the common case: no strings built)
        self._unpriced_day[model] = day
        sink = self.governance.sink
        date = time.strftime("%Y-%m-%d", time.gmtime())
        dedup = f"unpriced:{call.provider}/{call.upstream_model}:{date}"
        if not sink.seen(dedup):
            sink.raise_alert(
                "unpriced_model",
                "warning",
                f"model:{call.provider}/{call.upstream_model}",
                dedup,
                f"model {call.upstream_model!r} of provider {call.provider!r} has no price; "
                f"requests are allowed at zero cost (project {project!r}); set one with "
                "`aigw prices set`",
                {"provider": call.provider, "model": call.upstream_model, "project": project},
            )

    def _settle(self, call: Call) -> None:
        """The request's cost from its usage, and the budget reservation settled to it."""
        usage = call.usage
        if call.price is not None:
            call.cost_micros = call.price.cost(
                usage.input_tokens, usage.output_tokens, usage.cached_tokens
            )
        adm = call.admission
        if adm is not None and self.governance is not None:
            tokens = usage.input_tokens + usage.output_tokens
            if tokens or call.cost_micros:
                self.governance.complete(adm, call.cost_micros, tokens)
            else:
                self.governance.abort(adm)

    def finish(self, call: Call) -> asyncio.Future[bool]:
        """Record metrics and queue the usage row; the future resolves when it is committed."""
        call.recorded = True
        self._settle(call)  # before the row is queued: a reload cannot count it twice
        now = time.perf_counter()
        duration = now - call.started
        ttft = call.first_byte - call.started if call.stream and call.first_byte else None
        usage, key = call.usage, call.key
        self.metrics.observe(
            call.model or "-",
            call.provider or "-",
            call.status,
            duration,
            ttft,
            usage,
            call.upstream_error,
        )
        if call.retention is not None:  # queued first: it commits with the ledger row (or before)
            self.retainer.capture(call, call.retention)
        return self.writer.insert(
            _USAGE_SQL,
            (
                call.trace_id,
                time.time(),
                call.api,
                call.endpoint,
                call.model or "-",
                call.provider,
                call.upstream_model,
                int(call.stream),
                call.status,
                call.error or "",
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_tokens,
                int(usage.estimated),
                round(duration * 1000, 3),
                round(ttft * 1000, 3) if ttft is not None else -1,
                key.id if key else "",
                key.project if key else "",
                key.department if key else "",
                (key.user or "") if key else "",
                ",".join(call.tags) if call.tags else "",
                call.cost_micros,
                int(call.priced),
                int(call.cache_hit),
                call.deployment,
                call.route_reason or "",
                call.attempts,
                call.saved_micros,
                ",".join(call.detectors),
            ),
        )
