"""Static configuration: a TOML file validated on load, with defaults that make it optional.

Lookup order: `--config PATH`, then `$AIGW_CONFIG`, then `/etc/aigw/aigw.toml` when it exists,
then `./var/aigw.toml` when it exists, else the built-in defaults (development). Everything an
admin changes at run time lives in the database instead.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/aigw/aigw.toml")
DEV_CONFIG = Path("var/aigw.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")
SERIES = ("auto", "G", "S")  # auto: S when NVML finds a GPU, else G
VAULT_KEKS = ("keyfile", "passphrase", "credential", "auto")
# A systemd credential name becomes a file name under $CREDENTIALS_DIRECTORY.
CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,254}")
# What systemd 252 takes for --tpm2-device=: a path (its "device" TCTI), or DRIVER:PARAMS, which
# loads libtss2-tcti-DRIVER.so.0 (a path has no colon: systemd splits at the first one).
TPM2_DEVICE = re.compile(r"/[^:\s]+|[A-Za-z0-9_-]+:\S*")
BARE_TPM = re.compile(r"(device:)?/dev/tpm[0-9]+")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where the gateway listens and how much it accepts."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where the box keeps its database and secrets."""

    dir: str = "var"


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """Timeouts (seconds) for every call to a provider."""

    connect_timeout: float = 5.0
    first_byte_timeout: float = 120.0
    idle_timeout: float = 60.0
    # Anthropic requires max_tokens; an OpenAI-style request without one gets this.
    default_max_tokens: int = 4096
    # Cap on a provider's Retry-After passed to clients (the Anthropic SDK waits whatever it says).
    max_retry_after: int = 60


@dataclass(frozen=True, slots=True)
class UsageConfig:
    """The usage writer's group commit."""

    batch_max: int = 512
    # How long a commit may wait for other requests in flight to join it.
    commit_window_ms: int = 2


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging."""

    level: str = "info"
    access_log: bool = False
    # json: one object per line for the journal (the box); text: for a developer's terminal.
    format: str = "json"


@dataclass(frozen=True, slots=True)
class BoxConfig:
    """What kind of box this is."""

    # auto: the series follows the GPUs NVML finds at start (S with one or more, G with none).
    series: str = "auto"
    name: str = "aigw"
    # Budget periods (daily, weekly, monthly) reset at midnight in this IANA time zone.
    timezone: str = "UTC"
    # The box's currency: every amount is an integer count of its micro-units.
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """The per-request ledger: how long raw records are kept (hourly rollups are kept)."""

    retention_days: int = 90


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """The audit trail: how often both hash chains' heads go to the system log."""

    head_interval_s: int = 300


@dataclass(frozen=True, slots=True)
class BudgetsConfig:
    """Reserve-then-settle and the spend circuit breaker."""

    # A request without max_tokens reserves the model's output limit, capped by this.
    reserve_output_ceiling: int = 8192
    # The breaker trips when the spend of the last `breaker_window_minutes` runs faster than
    # `breaker_multiple` times the trailing `breaker_baseline_hours` average; then it alerts,
    # or, with breaker_action = "suspend", also suspends the key or project until lifted.
    breaker_multiple: float = 10.0
    breaker_window_minutes: int = 10
    breaker_baseline_hours: int = 24
    breaker_min_micros: int = 1_000_000
    breaker_action: str = "alert"


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The exact response cache (in memory, per project by default)."""

    enabled: bool = True
    max_bytes: int = 256 * 1024 * 1024
    ttl_seconds: int = 3600


@dataclass(frozen=True, slots=True)
class InferenceConfig:
    """Local vLLM engines: where their environment is and how they are run and watched."""

    # The python of vLLM's own virtual environment (torch lives there, never in the gateway's).
    # Empty: $AIGW_ENGINE_PYTHON, else /opt/aigw/engine/bin/python (the image's place).
    engine_python: str = ""
    # Engines listen on 127.0.0.1, on ports the box allocates from this range.
    port_base: int = 8200
    port_count: int = 100
    # auto: the GPUs when there are any, else vLLM's CPU build; cuda or cpu force one.
    device: str = "auto"
    # process: engines are child processes of `aigw up`; systemd: instances of the unit
    # aigw-engine@NAME.service (the box), started and stopped by the gateway.
    supervisor: str = "process"
    gpu_memory_utilization: float = 0.90
    # CPU engines: the KV cache's size in bytes (vLLM's --kv-cache-memory-bytes); 0: its default.
    cpu_kv_cache_bytes: int = 0
    # CPU engines: the cores vLLM binds its threads to ("0-13", "0,2,4"); empty: all of them.
    cpu_cores: str = ""
    start_timeout_s: float = 600.0
    stop_timeout_s: float = 20.0
    restart_backoff_max_s: float = 60.0
    # How often engines' /health and /metrics (local and remote) are read.
    watch_interval_s: float = 2.0


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """Webhook delivery of alerts."""

    webhook_timeout: float = 5.0
    max_attempts: int = 6


@dataclass(frozen=True, slots=True)
class VaultConfig:
    """The secrets vault and where its key-encryption key (KEK) comes from."""

    # keyfile: a root-only file of 32 random bytes (the development default);
    # passphrase: typed by an operator at each start (the vault opens sealed);
    # credential: a systemd credential, TPM2-sealed on boxes that have one;
    # auto: the credential when the unit passes it ($CREDENTIALS_DIRECTORY), else the key file.
    kek: str = "keyfile"
    # Empty means the default under the state directory (vault.json, vault.key).
    path: str = ""
    key_file: str = ""
    credential: str = "aigw-vault-kek"
    # The TPM that seals the credential, as `systemd-creds --tpm2-device=` takes it: empty for
    # systemd's automatic choice (asked with `systemd-creds has-tpm2`), a device path
    # (/dev/tpmrm0), or a TCTI `driver:params` (swtpm:host=127.0.0.1,port=2321). Set, it also
    # tells first boot that the TPM is there: has-tpm2 cannot see one reached through a TCTI.
    tpm2_device: str = ""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """HTTPS on the LAN with the box certificate; [server] stays plain HTTP on loopback."""

    # The box turns this on (/etc/aigw/aigw.toml); development runs plain HTTP only.
    enabled: bool = False
    host: str = "0.0.0.0"
    port: int = 8443
    # Empty: the certificate that first boot made, <state>/tls/cert.pem and key.pem.
    cert_file: str = ""
    key_file: str = ""
    # How often a running box checks whether its own certificate needs renewing (30 days
    # before expiry); a company certificate is only checked, never replaced.
    renew_check_s: float = 21600.0


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """mDNS/DNS-SD advertising of the gateway on the LAN (python-zeroconf)."""

    enabled: bool = False
    # Comma-separated IPv4 addresses to announce on; empty: every interface that has one.
    interfaces: str = ""
    # The DNS-SD instance name; empty: the box's hostname (aigw-3f9c).
    instance: str = ""


@dataclass(frozen=True, slots=True)
class ProvisioningConfig:
    """First boot: what it may change on the host beyond the state directory."""

    # The box sets its static hostname (aigw-3f9c); a development machine keeps its own.
    set_hostname: bool = False
    # Watch for seed media, model bundles and backups with a pyudev monitor in `aigw up`.
    watch_media: bool = False
    # Where media are mounted while they are read.
    media_mount_dir: str = "/run/aigw/media"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole static configuration, validated."""

    box: BoxConfig = field(default_factory=BoxConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    state: StateConfig = field(default_factory=StateConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    usage: UsageConfig = field(default_factory=UsageConfig)
    log: LogConfig = field(default_factory=LogConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    budgets: BudgetsConfig = field(default_factory=BudgetsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    provisioning: ProvisioningConfig = field(default_factory=ProvisioningConfig)
    source: str = "<defaults>"

    @property
    def state_dir(self) -> Path:
        """The state directory, absolute."""
        return Path(self.state.dir).expanduser().resolve()

    @property
    def database_path(self) -> Path:
        """The SQLite database file."""
        return self.state_dir / "aigw.db"

    @property
    def models_dir(self) -> Path:
        """The model store: one folder per imported model, each with its manifest."""
        return self.state_dir / "models"

    @property
    def engine_python(self) -> Path:
        """The python of vLLM's own virtual environment."""
        raw = self.inference.engine_python or os.environ.get("AIGW_ENGINE_PYTHON", "")
        return Path(raw or "/opt/aigw/engine/bin/python").expanduser()

    @property
    def tls_cert_file(self) -> Path:
        """The certificate served on the LAN, absolute."""
        raw = self.tls.cert_file
        return Path(raw).expanduser().resolve() if raw else self.state_dir / "tls" / "cert.pem"

    @property
    def tls_key_file(self) -> Path:
        """The certificate's private key, absolute."""
        raw = self.tls.key_file
        return Path(raw).expanduser().resolve() if raw else self.state_dir / "tls" / "key.pem"

    @property
    def discovery_interfaces(self) -> list[str]:
        """The IPv4 addresses mDNS announces on; empty for all."""
        return [a.strip() for a in self.discovery.interfaces.split(",") if a.strip()]

    @property
    def vault_path(self) -> Path:
        """The vault file, absolute."""
        if self.vault.path:
            return Path(self.vault.path).expanduser().resolve()
        return self.state_dir / "vault.json"

    @property
    def vault_key_file(self) -> Path:
        """The vault's key file (used when [vault] kek is "keyfile"), absolute."""
        if self.vault.key_file:
            return Path(self.vault.key_file).expanduser().resolve()
        return self.state_dir / "vault.key"


_SECTIONS: dict[str, type] = {
    "box": BoxConfig,
    "server": ServerConfig,
    "state": StateConfig,
    "upstream": UpstreamConfig,
    "usage": UsageConfig,
    "log": LogConfig,
    "vault": VaultConfig,
    "ledger": LedgerConfig,
    "audit": AuditConfig,
    "budgets": BudgetsConfig,
    "alerts": AlertsConfig,
    "cache": CacheConfig,
    "inference": InferenceConfig,
    "tls": TlsConfig,
    "discovery": DiscoveryConfig,
    "provisioning": ProvisioningConfig,
}


def _type_name(tp: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[tp]


def _check_value(section: str, key: str, tp: type, value: Any) -> Any:
    """Type-check one value; ints are accepted where floats are expected."""
    where = f"[{section}] {key}"
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (tp is int and isinstance(value, bool)) or not isinstance(value, tp):
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    return value


def _validate(cfg: Config) -> None:
    """Range checks that need more than a type."""
    s, u = cfg.server, cfg.upstream
    if not 0 < s.port < 65536:
        raise ConfigError(f"[server] port must be 1-65535, got {s.port}")
    try:
        ipaddress.ip_address(s.host)
    except ValueError:
        if s.host != "localhost":
            raise ConfigError(
                f"[server] host must be an IP address or 'localhost', got {s.host!r}"
            ) from None
    if s.max_body_bytes < 1024:
        raise ConfigError(f"[server] max_body_bytes must be at least 1024, got {s.max_body_bytes}")
    for name in ("connect_timeout", "first_byte_timeout", "idle_timeout"):
        if getattr(u, name) <= 0:
            raise ConfigError(f"[upstream] {name} must be > 0 seconds, got {getattr(u, name)}")
    if u.default_max_tokens < 1:
        raise ConfigError("[upstream] default_max_tokens must be >= 1")
    if u.max_retry_after < 0:
        raise ConfigError("[upstream] max_retry_after must be >= 0")
    if cfg.usage.batch_max < 1:
        raise ConfigError("[usage] batch_max must be >= 1")
    if not 0 <= cfg.usage.commit_window_ms <= 100:
        raise ConfigError("[usage] commit_window_ms must be 0-100")
    if cfg.log.level not in LOG_LEVELS:
        raise ConfigError(f"[log] level must be one of {', '.join(LOG_LEVELS)}")
    if cfg.log.format not in ("json", "text"):
        raise ConfigError(f"[log] format must be one of json, text, got {cfg.log.format!r}")
    if cfg.box.series not in SERIES:
        raise ConfigError(
            f"[box] series must be one of {', '.join(SERIES)}, got {cfg.box.series!r}"
        )
    v = cfg.vault
    if v.kek not in VAULT_KEKS:
        raise ConfigError(f"[vault] kek must be one of {', '.join(VAULT_KEKS)}, got {v.kek!r}")
    if not CREDENTIAL_NAME.fullmatch(v.credential):
        raise ConfigError(
            f"[vault] credential must be a systemd credential name (letters, digits, _ . @ -), "
            f"got {v.credential!r}"
        )
    if v.tpm2_device and not TPM2_DEVICE.fullmatch(v.tpm2_device):
        raise ConfigError(
            "[vault] tpm2_device must be empty, a device path (/dev/tpmrm0) or a TCTI "
            f"driver:params (swtpm:host=127.0.0.1,port=2321), got {v.tpm2_device!r}"
        )
    if BARE_TPM.fullmatch(v.tpm2_device):
        # systemd 252 leaves a session in the TPM at each systemd-creds call; only the kernel's
        # resource manager flushes it, and a bare TPM has three slots.
        raise ConfigError(
            f"[vault] tpm2_device {v.tpm2_device!r} is a TPM without the kernel's resource "
            "manager, which runs out of sessions after a few unseals: use /dev/tpmrm0 "
            "(the /dev/tpmrmN of that TPM)"
        )
    if cfg.vault_path == cfg.vault_key_file:
        raise ConfigError("[vault] path and key_file must be different files")
    _validate_governance(cfg)


def _validate_governance(cfg: Config) -> None:
    try:
        ZoneInfo(cfg.box.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"[box] timezone must be an IANA time zone such as 'Europe/Berlin', "
            f"got {cfg.box.timezone!r}"
        ) from None
    if not re.fullmatch(r"[A-Z]{3}", cfg.box.currency):
        raise ConfigError(f"[box] currency must be an ISO 4217 code, got {cfg.box.currency!r}")
    if cfg.ledger.retention_days < 1:
        raise ConfigError("[ledger] retention_days must be >= 1")
    if not 1 <= cfg.audit.head_interval_s <= 86400:
        raise ConfigError("[audit] head_interval_s must be 1-86400 seconds")
    b = cfg.budgets
    if b.reserve_output_ceiling < 1:
        raise ConfigError("[budgets] reserve_output_ceiling must be >= 1")
    if b.breaker_multiple <= 1:
        raise ConfigError("[budgets] breaker_multiple must be > 1")
    if b.breaker_window_minutes < 1 or b.breaker_baseline_hours < 1:
        raise ConfigError(
            "[budgets] breaker_window_minutes and breaker_baseline_hours must be >= 1"
        )
    if b.breaker_min_micros < 0:
        raise ConfigError("[budgets] breaker_min_micros must be >= 0")
    if b.breaker_action not in ("alert", "suspend"):
        raise ConfigError("[budgets] breaker_action must be 'alert' or 'suspend'")
    if cfg.cache.max_bytes < 0 or cfg.cache.ttl_seconds < 1:
        raise ConfigError("[cache] max_bytes must be >= 0 and ttl_seconds >= 1")
    if cfg.alerts.webhook_timeout <= 0 or cfg.alerts.max_attempts < 1:
        raise ConfigError("[alerts] webhook_timeout must be > 0 and max_attempts >= 1")
    _validate_inference(cfg.inference)
    _validate_shell(cfg)


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_shell(cfg: Config) -> None:
    t = cfg.tls
    if not 0 < t.port < 65536:
        raise ConfigError(f"[tls] port must be 1-65535, got {t.port}")
    try:
        ipaddress.ip_address(t.host)
    except ValueError:
        raise ConfigError(f"[tls] host must be an IP address, got {t.host!r}") from None
    if t.renew_check_s <= 0:
        raise ConfigError("[tls] renew_check_s must be > 0 seconds")
    if t.enabled and t.host == cfg.server.host and t.port == cfg.server.port:
        raise ConfigError("[tls] and [server] must not listen on the same address and port")
    if t.enabled and not _is_loopback(cfg.server.host):
        raise ConfigError(
            f"[server] host must be a loopback address when [tls] is enabled (plain HTTP on "
            f"loopback only; the LAN gets HTTPS on [tls] host), got {cfg.server.host!r}"
        )
    for addr in cfg.discovery_interfaces:
        try:
            ipaddress.IPv4Address(addr)
        except ValueError:
            raise ConfigError(
                f"[discovery] interfaces must be IPv4 addresses separated by commas, got {addr!r}"
            ) from None
    if len(cfg.discovery.instance.encode()) > 63:
        raise ConfigError("[discovery] instance must be at most 63 bytes")


def _validate_inference(i: InferenceConfig) -> None:
    if i.device not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"[inference] device must be auto, cuda or cpu, got {i.device!r}")
    if i.supervisor not in ("process", "systemd"):
        raise ConfigError(
            f"[inference] supervisor must be process or systemd, got {i.supervisor!r}"
        )
    if i.port_base < 1024 or i.port_count < 1 or i.port_base + i.port_count > 65536:
        raise ConfigError("[inference] port_base and port_count must name ports 1024-65535")
    if not 0 < i.gpu_memory_utilization <= 1:
        raise ConfigError("[inference] gpu_memory_utilization must be > 0 and <= 1")
    if i.cpu_cores and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", i.cpu_cores):
        raise ConfigError(f"[inference] cpu_cores must be like 0-13 or 0,2,4, got {i.cpu_cores!r}")
    if i.cpu_kv_cache_bytes < 0:
        raise ConfigError("[inference] cpu_kv_cache_bytes must be >= 0")
    for name in ("start_timeout_s", "stop_timeout_s", "restart_backoff_max_s", "watch_interval_s"):
        if getattr(i, name) <= 0:
            raise ConfigError(f"[inference] {name} must be > 0 seconds")


def parse_config(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Build a validated Config from parsed TOML; unknown keys are refused by name."""
    sections: dict[str, Any] = {}
    for name, raw in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            allowed = ", ".join(f"[{n}]" for n in _SECTIONS)
            raise ConfigError(f"{source}: unknown section [{name}]; allowed: {allowed}")
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in raw.items():
            if key not in known:
                raise ConfigError(
                    f"{source}: unknown key [{name}] {key}; allowed: {', '.join(known)}"
                )
            tp = type(getattr(cls(), key))
            try:
                values[key] = _check_value(name, key, tp, value)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
        sections[name] = cls(**values)
    cfg = Config(**sections, source=source)
    try:
        _validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def find_config_path(explicit: str | None = None) -> Path | None:
    """The config file to read, or None for built-in defaults."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("AIGW_CONFIG")
    if env:
        return Path(env)
    for candidate in (SYSTEM_CONFIG, DEV_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load_config(explicit: str | None = None) -> Config:
    """Load and validate the configuration; a named file that is missing is an error."""
    path = find_config_path(explicit)
    if path is None:
        return Config()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(data, str(path))
