"""The admin API's route table: every route, who may call it, and what it takes and returns.

One table drives the router, the role check and the OpenAPI document, so the three cannot
drift apart (and a test iterates it to try every role against every route).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from gateway.admin import (
    alerts,
    audit,
    budgets,
    catalog,
    engines,
    gpus,
    health,
    keys,
    local_models,
    masking,
    media,
    org,
    prices,
    reports,
    routing,
    spend,
    system,
    system_ops,
    vault,
)
from gateway.admin.body import Field

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ADMIN = frozenset({"admin"})
READ = frozenset({"admin", "auditor"})
# finance reads usage and the organisation (for chargeback), nothing else.
FINANCE_READ = frozenset({"admin", "auditor", "finance"})
ALL_ROLES = FINANCE_READ
# finance also records business value (outcomes) for the ROI report.
FINANCE_WRITE = frozenset({"admin", "finance"})


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: method, path under /admin/v1, handler, roles, documentation."""

    method: str
    path: str
    handler: Handler
    roles: frozenset[str]
    summary: str
    response: str | None  # component schema of the success body; None: 204, no body
    status: int = 200
    body: str | None = None  # component schema of the request body
    fields: Mapping[str, Field] = field(default_factory=dict)  # the body's fields
    query: tuple[str, ...] = ()  # names of query parameters (see openapi.QUERY)
    csv: bool = False  # the success body may also be text/csv (?format=csv)
    jsonl: bool = False  # ... or JSON Lines (?format=jsonl)


def _crud(
    plural: str,
    param: str,
    schema: str,
    module: object,
    singular: str,
    read_roles: frozenset[str],
    *,
    create: Mapping[str, Field],
    update: Mapping[str, Field] | None,
    query: tuple[str, ...] = (),
    created: str | None = None,
) -> list[Route]:
    """The five routes of a named collection (list, create, get, update, delete)."""
    item = f"/{plural}/{{{param}}}"
    name = schema.lower()
    h = lambda verb: getattr(module, f"{verb}_{singular}")  # noqa: E731
    routes = [
        Route(
            "GET",
            f"/{plural}",
            getattr(module, f"list_{plural}"),
            read_roles,
            f"List {plural}",
            f"{schema}List",
            query=query,
        ),
        Route(
            "POST",
            f"/{plural}",
            h("create"),
            ADMIN,
            f"Create a {name}",
            created or schema,
            201,
            f"{schema}Create",
            create,
        ),
        Route("GET", item, h("get"), read_roles, f"Get a {name}", schema),
    ]
    if update is not None:
        routes.append(
            Route(
                "PATCH",
                item,
                h("update"),
                ADMIN,
                f"Change a {name}",
                schema,
                200,
                f"{schema}Update",
                update,
            )
        )
    routes.append(Route("DELETE", item, h("delete"), ADMIN, f"Delete a {name}", None, 204))
    return routes


_REPORT_QUERY = ("since", "until", "format")
_AUDIT_SEARCH = ("since", "until", "limit", "cursor", "order", "format")
# Spend reports filter by any dimension they group by.
_DIMENSION_QUERY = ("department", "project", "user", "key", "model", "provider", "tag")


def _action(path: str, handler: Handler, summary: str, schema: str) -> Route:
    return Route("POST", path, handler, ADMIN, summary, schema)


ROUTES: list[Route] = [
    Route("GET", "/openapi.json", reports.openapi_json, ALL_ROLES, "This document", "OpenAPI"),
    Route("GET", "/status", reports.status, READ, "Versions and object counts", "Status"),
    *_crud(
        "departments",
        "name",
        "Department",
        org,
        "department",
        FINANCE_READ,
        create=org.DEPARTMENT_CREATE,
        update=org.DEPARTMENT_UPDATE,
    ),
    # Before the projects' routes: `/projects/{name}` also matches names with slashes.
    Route(
        "PUT",
        "/projects/{name}/masking/{detector}",
        masking.put_rule,
        ADMIN,
        "Create or replace what a project does when a detector (built-in or custom:NAME) fires",
        "MaskingRule",
        200,
        "MaskingRulePut",
        masking.RULE_PUT,
    ),
    Route(
        "DELETE",
        "/projects/{name}/masking/{detector}",
        masking.delete_rule,
        ADMIN,
        "Stop applying a detector in a project",
        None,
        204,
    ),
    *_crud(
        "projects",
        "name",
        "Project",
        org,
        "project",
        FINANCE_READ,
        create=org.PROJECT_CREATE,
        update=org.PROJECT_UPDATE,
        query=("department",),
    ),
    *_crud(
        "users",
        "name",
        "User",
        org,
        "user",
        FINANCE_READ,
        create=org.USER_CREATE,
        update=org.USER_UPDATE,
        query=("department",),
    ),
    *_crud(
        "keys",
        "id",
        "Key",
        keys,
        "key",
        READ,
        create=keys.KEY_CREATE,
        update=keys.KEY_UPDATE,
        query=("project", "user"),
        created="KeyWithSecret",
    ),
    Route(
        "POST",
        "/keys/{id}/rotate",
        keys.rotate_key,
        ADMIN,
        "Issue a new secret; the old one works for grace_seconds more",
        "KeyWithSecret",
        200,
        "KeyRotate",
        keys.KEY_ROTATE,
    ),
    _action("/keys/{id}/disable", keys.disable_key, "Disable a key (reversible)", "Key"),
    _action("/keys/{id}/enable", keys.enable_key, "Enable a disabled key", "Key"),
    _action("/keys/{id}/revoke", keys.revoke_key, "Revoke a key for good", "Key"),
    # Before the providers' routes: `/providers/{name}` also matches names with slashes.
    Route(
        "PUT",
        "/providers/{name}/key",
        vault.set_provider_key,
        ADMIN,
        "Store a new version of the provider's API key in the vault (write-only)",
        "ProviderKeySet",
        200,
        "ProviderKey",
        vault.SET_KEY,
    ),
    Route(
        "DELETE",
        "/providers/{name}/key",
        vault.clear_provider_key,
        ADMIN,
        "Remove the provider's API key from the vault",
        None,
        204,
    ),
    *_crud(
        "providers",
        "name",
        "Provider",
        catalog,
        "provider",
        READ,
        create=catalog.PROVIDER_CREATE,
        update=None,
    ),
    *_crud(
        "models", "alias", "Model", catalog, "model", READ, create=catalog.MODEL_CREATE, update=None
    ),
    # The model store: models imported on this box (`aigw models import`) and trusted keys.
    Route(
        "GET",
        "/local-models",
        local_models.list_local_models,
        READ,
        "List the imported local models, with their engines' state",
        "LocalModelList",
    ),
    Route(
        "POST",
        "/local-models/import",
        local_models.import_local_model,
        ADMIN,
        "Import a model folder or a signed bundle from the box's filesystem (every hash checked)",
        "LocalModel",
        201,
        "LocalModelImport",
        local_models.IMPORT,
    ),
    _action(
        "/local-models/{name}/enable",
        local_models.enable_local_model,
        "Enable a local model: its engine starts (refused when its files are not all there)",
        "LocalModel",
    ),
    _action(
        "/local-models/{name}/disable",
        local_models.disable_local_model,
        "Disable a local model: its engine stops",
        "LocalModel",
    ),
    _action(
        "/local-models/{name}/verify",
        local_models.check_local_model,
        "Read a local model's files again and compare each SHA-256 with its manifest",
        "LocalModelCheck",
    ),
    Route(
        "GET",
        "/local-models/{name}",
        local_models.get_local_model,
        READ,
        "Get a local model with its manifest",
        "LocalModel",
    ),
    Route(
        "DELETE",
        "/local-models/{name}",
        local_models.delete_local_model,
        ADMIN,
        "Delete a disabled local model and its files",
        None,
        204,
    ),
    Route(
        "GET",
        "/trusted-keys",
        local_models.list_trusted_keys,
        READ,
        "List the keys whose model bundles this box accepts",
        "TrustedKeyList",
    ),
    Route(
        "POST",
        "/trusted-keys",
        local_models.create_trusted_key,
        ADMIN,
        "Trust model bundles signed by an Ed25519 public key",
        "TrustedKey",
        201,
        "TrustedKeyCreate",
        local_models.KEY_CREATE,
    ),
    Route(
        "DELETE",
        "/trusted-keys/{name}",
        local_models.delete_trusted_key,
        ADMIN,
        "Stop trusting a key for new imports",
        None,
        204,
    ),
    Route("GET", "/routes", routing.list_routes, READ, "List routes", "RouteList"),
    # Before /routes/{alias}, whose alias may hold '/' and would match this path too.
    Route(
        "GET",
        "/routes/{alias}/health",
        health.route_health,
        READ,
        "Health of a route's deployments in priority order (this gateway process's memory)",
        "DeploymentHealthList",
    ),
    Route("GET", "/routes/{alias}", routing.get_route, READ, "Get a route", "Route"),
    Route(
        "PUT",
        "/routes/{alias}",
        routing.put_route,
        ADMIN,
        "Create or replace a route: its strategy, deployments, tiers and fallback",
        "Route",
        200,
        "RoutePut",
        routing.ROUTE_PUT,
    ),
    Route("DELETE", "/routes/{alias}", routing.delete_route, ADMIN, "Delete a route", None, 204),
    Route(
        "GET",
        "/health/deployments",
        health.list_deployment_health,
        READ,
        "Each routed deployment's circuit breaker, cool-down, error rate and latency averages "
        "(this gateway process's memory)",
        "DeploymentHealthList",
        query=("route",),
    ),
    _action(
        "/health/deployments/{id}/reset",
        health.reset_deployment_health,
        "Close a deployment's circuit breaker and end its cool-down",
        "DeploymentHealth",
    ),
    Route(
        "GET",
        "/prices",
        prices.list_prices,
        FINANCE_READ,
        "List prices per provider or vendor and model, with the one in effect now",
        "PriceList",
        query=("provider", "model"),
    ),
    Route(
        "POST",
        "/prices",
        prices.set_price,
        ADMIN,
        "Set a price (micro-units per million tokens) from its effective date",
        "Price",
        200,
        "PriceSet",
        prices.PRICE_SET,
    ),
    Route(
        "DELETE",
        "/prices",
        prices.delete_price,
        ADMIN,
        "Remove a price from one effective date, or all of a model's prices",
        None,
        204,
        query=("provider", "model", "effective_from"),
    ),
    Route(
        "POST",
        "/prices/local",
        prices.set_local_price,
        ADMIN,
        "Price a local model by amortized cost (per million tokens, or per GPU-hour)",
        "Price",
        200,
        "PriceLocal",
        prices.PRICE_LOCAL,
    ),
    Route(
        "GET",
        "/masking/detectors",
        masking.list_detectors,
        READ,
        "The built-in masking detectors and the actions a rule may take, described",
        "MaskingDetectors",
    ),
    Route(
        "GET",
        "/masking/rules",
        masking.list_rules,
        READ,
        "List masking rules, of every project or of one",
        "MaskingRuleList",
        query=("project",),
    ),
    Route(
        "POST",
        "/masking/test",
        masking.try_rules,
        # Stores nothing, but runs the caller's regular expressions on the event loop: only
        # an admin, who could put the same pattern in a rule anyway.
        ADMIN,
        "What a project's rules, or rules given here, would do to a text (positions, never values)",
        "MaskingTestResult",
        200,
        "MaskingTest",
        masking.TEST,
    ),
    Route(
        "GET", "/admin-tokens", keys.list_admin_tokens, READ, "List admin tokens", "AdminTokenList"
    ),
    Route(
        "POST",
        "/admin-tokens",
        keys.create_admin_token,
        ADMIN,
        "Create an admin token",
        "AdminTokenWithSecret",
        201,
        "AdminTokenCreate",
        keys.TOKEN_CREATE,
    ),
    Route(
        "GET", "/admin-tokens/{id}", keys.get_admin_token, READ, "Get an admin token", "AdminToken"
    ),
    _action(
        "/admin-tokens/{id}/revoke", keys.revoke_admin_token, "Revoke an admin token", "AdminToken"
    ),
    Route(
        "GET",
        "/audit",
        reports.audit,
        READ,
        "The audit trail, newest first",
        "AuditPage",
        query=("limit", "before_id", "object_type", "actor"),
    ),
    Route(
        "GET",
        "/audit/verify",
        audit.verify_admin_chain,
        READ,
        "Check the admin audit trail's hash chain (POST also checks the ledger and the heads)",
        "AuditVerify",
    ),
    Route(
        "POST",
        "/audit/verify",
        audit.verify_chains,
        READ,  # a read: it walks both chains and changes nothing
        "Walk the admin trail's and the ledger's hash chains; ok, or the first bad record",
        "AuditVerifyReport",
        200,
        "AuditVerifyBody",
        audit.VERIFY,
    ),
    Route(
        "GET",
        "/audit/requests",
        audit.search_requests,
        FINANCE_READ,  # ledger records are usage, which finance reads
        "Search ledger records (default: the last 24 hours); format=jsonl streams every match",
        "AuditRequestPage",
        query=(*_AUDIT_SEARCH, "trace_id", "key", "user", "project", "status"),
        jsonl=True,
    ),
    Route(
        "GET",
        "/audit/requests/{trace_id}",
        audit.request_timeline,
        READ,  # it shows admin events too
        "One request's ledger record(s) and the admin events on its key around that time",
        "AuditTimeline",
        query=("since", "until"),
    ),
    Route(
        "GET",
        "/audit/requests/{trace_id}/content",
        audit.request_content,
        READ,  # content is for auditors and admins only; every read is itself audited
        "One request's retained content, decrypted (metadata, or the full request and answer)",
        "AuditContent",
    ),
    Route(
        "GET",
        "/audit/events",
        audit.search_events,
        READ,
        "Search admin events; format=jsonl streams every match",
        "AuditEventPage",
        query=(*_AUDIT_SEARCH, "actor", "action", "object_type", "object_id"),
        jsonl=True,
    ),
    Route("GET", "/gpus", gpus.get_gpus, READ, "The box's series and GPU readings", "GpuReport"),
    Route(
        "GET", "/system", system.get_system, READ, "The box: identity, first boot, TLS", "System"
    ),
    _action(
        "/system/first-token",
        system.first_token,
        "The first admin token, once, over the local socket only",
        "FirstToken",
    ),
    _action(
        "/system/tls/reload",
        system.reload_tls,
        "Serve the installed TLS certificate on new connections",
        "TlsReload",
    ),
    # Backups, restore and factory reset (gateway/admin/system_ops.py).
    Route(
        "GET",
        "/system/backups",
        system_ops.list_backups,
        ADMIN,
        "The backups on the box, newest first",
        "BackupList",
    ),
    Route(
        "POST",
        "/system/backups",
        system_ops.create_backup_file,
        ADMIN,
        "Write an encrypted backup of the box into <state>/backups",
        "BackupCreated",
        201,
        "BackupCreate",
        system_ops.BACKUP_CREATE,
    ),
    Route(
        "GET",
        "/system/backups/{name}",
        system_ops.download_backup,
        ADMIN,
        "Download a backup (application/octet-stream, encrypted)",
        "BackupFile",
    ),
    Route(
        "DELETE",
        "/system/backups/{name}",
        system_ops.delete_backup,
        ADMIN,
        "Delete a backup",
        None,
        204,
    ),
    Route(
        "POST",
        "/system/restore",
        system_ops.restore,
        ADMIN,
        "Check a backup whole, stage it and restart to install it. "
        + system_ops.RESTORE_DESCRIPTION,
        "RestoreStaged",
        200,
        "Restore",
        system_ops.RESTORE,
    ),
    Route(
        "POST",
        "/system/factory-reset",
        system_ops.factory_reset,
        ADMIN,
        "Wipe the box and provision it anew at the restart (local socket only; confirm with "
        "the appliance id)",
        "ResetPending",
        200,
        "FactoryReset",
        system_ops.FACTORY_RESET,
    ),
    Route("GET", "/vault", vault.vault_status, READ, "The vault's state", "VaultStatus"),
    Route(
        "POST",
        "/vault/unseal",
        vault.unseal,
        ADMIN,
        "Open a passphrase vault",
        "VaultStatus",
        200,
        "VaultUnseal",
        vault.UNSEAL,
    ),
    _action("/vault/seal", vault.seal, "Seal the vault until the next unseal", "VaultStatus"),
    Route(
        "POST",
        "/vault/rotate-kek",
        vault.rotate_kek,
        ADMIN,
        "Rewrap every data key under a new key-encryption key",
        "VaultStatus",
        200,
        "VaultRotate",
        vault.ROTATE,
    ),
    Route(
        "GET",
        "/usage",
        reports.usage,
        FINANCE_READ,
        "Per-request usage, newest first",
        "UsageList",
        query=("since", "until", "model", "limit"),
    ),
    Route(
        "GET",
        "/reports/spend",
        spend.spend_report,
        FINANCE_READ,
        "Requests, tokens and cost by dimension and time bucket, from the hourly rollups",
        "SpendReport",
        query=(*_REPORT_QUERY, "group_by", "bucket", "top", *_DIMENSION_QUERY),
        csv=True,
    ),
    Route(
        "GET",
        "/reports/roi",
        spend.roi_report,
        FINANCE_READ,
        "Cost against recorded business value, per business line",
        "RoiReport",
        query=_REPORT_QUERY,
        csv=True,
    ),
    Route(
        "POST",
        "/outcomes",
        spend.create_outcome,
        FINANCE_WRITE,
        "Attach a business value to a trace id or a tag",
        "Outcome",
        201,
        "OutcomeCreate",
        spend.OUTCOME_CREATE,
    ),
    Route(
        "GET",
        "/outcomes",
        spend.list_outcomes,
        FINANCE_READ,
        "Recorded outcomes, newest first",
        "OutcomeList",
        query=("since", "until", "business_line", "limit"),
    ),
    # Cost governance. /budgets/status before /budgets/{id}, which would match it too.
    Route(
        "GET",
        "/budgets/status",
        budgets.budget_status,
        FINANCE_READ,
        "Each budget's limit, spent and reserved amounts, and when its period resets",
        "BudgetStatusList",
        query=("level", "target"),
    ),
    *_crud(
        "budgets",
        "id",
        "Budget",
        budgets,
        "budget",
        FINANCE_READ,
        create=budgets.BUDGET_CREATE,
        update=budgets.BUDGET_UPDATE,
        query=("level", "target"),
    ),
    Route(
        "GET",
        "/alerts",
        alerts.list_alerts,
        FINANCE_READ,
        "Alerts, newest first",
        "AlertPage",
        query=("kind", "severity", "acknowledged", "since", "limit", "before_id"),
    ),
    Route("GET", "/alerts/{id}", alerts.get_alert, FINANCE_READ, "Get an alert", "Alert"),
    _action("/alerts/{id}/acknowledge", alerts.acknowledge_alert, "Acknowledge an alert", "Alert"),
    *_crud(
        "webhooks",
        "id",
        "Webhook",
        alerts,
        "webhook",
        READ,
        create=alerts.WEBHOOK_CREATE,
        update=None,
    ),
    _action("/webhooks/{id}/test", alerts.test_webhook, "Send a test alert once", "WebhookTest"),
    Route(
        "GET",
        "/suspensions",
        alerts.list_suspensions,
        READ,
        "The spend breaker's suspensions, newest first",
        "SuspensionList",
        query=("active",),
    ),
    _action(
        "/suspensions/{id}/lift",
        alerts.lift_suspension,
        "Lift a suspension: the key or project may spend again",
        "Suspension",
    ),
    Route(
        "GET",
        "/engines",
        engines.list_engines,
        READ,
        "Every engine, local and remote, with its state and load (this gateway's memory)",
        "EngineList",
    ),
    Route(
        "GET",
        "/engines/{name}/log",
        engines.engine_log,
        READ,
        "The last lines of a local engine's log (its file, or its unit's journal)",
        "EngineLog",
        query=("lines",),
    ),
    Route(
        "GET",
        "/media/last",
        media.get_last_media,
        READ,
        "What the box did with the last removable medium (seed, model bundles, backups)",
        "MediaLast",
    ),
    Route(
        "GET",
        "/engines/remote",
        engines.list_remote_engines,
        READ,
        "The registered remote engines",
        "RemoteEngineList",
    ),
    Route(
        "POST",
        "/engines/remote",
        engines.add_remote_engine,
        ADMIN,
        "Register a vLLM server elsewhere on the network by URL, with the model it serves",
        "RemoteEngine",
        201,
        "RemoteEngineCreate",
        engines.REMOTE_CREATE,
    ),
    Route(
        "DELETE",
        "/engines/remote/{name}",
        engines.delete_remote_engine,
        ADMIN,
        "Stop watching and routing to a remote engine",
        None,
        204,
    ),
]
