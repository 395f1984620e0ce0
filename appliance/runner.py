"""`aigw up`: the gateway and the engines of enabled local models, in one process tree."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace

import uvloop
from aiohttp import web

from appliance.config import Config
from appliance.discovery import Advertiser, BoxInfo, DiscoveryError
from appliance.engines import EngineManager
from appliance.errors import ApplianceError, ConfigError
from appliance.files import version as _version
from appliance.identity import Identity
from appliance.logs import make_handler
from appliance.sdnotify import StatusReporter, Watchdog, notify
from appliance.store import open_store
from appliance.vault import VaultError, open_vault
from gateway.admin.system_ops import RESTART, Restart
from gateway.admin.unix_socket import SOCKET_NAME, start_admin_socket
from gateway.app import create_app
from gateway.state import Gateway
from inference.gpu_metrics import register_gpu_metrics
from inference.gpus import GpuReport, probe, resolve_series
from provisioning.firstboot import FIRST_TOKEN, provision
from provisioning.media import MediaWatcher, cli_handler
from provisioning.pending import finish_pending
from provisioning.tls import LiveTls, TlsError, ensure_box_cert

log = logging.getLogger("aigw")
RESTART_EXIT = 75  # EX_TEMPFAIL: stopped to be started again (a restore, a factory reset)


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path.

    Everything loaded at start (modules, tokenizer tables, the catalog) lives as long as the
    process: freezing it spares every later collection from walking it again. Requests make
    many short-lived containers and few cycles, so young collections can be rarer too. Measured
    with `make bench`: about 10-15% less CPU per request.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def setup_logging(cfg: Config) -> None:
    """Log lines to stderr: JSON (the box) or text (`[log] format`), secrets redacted.

    stderr, not stdout: stdout carries the banner that people and scripts read (the URL, the
    first admin token, next steps), and journald captures both streams on the box.
    """
    handler = make_handler(cfg.log.format, sys.stderr)
    logging.basicConfig(level=cfg.log.level.upper(), handlers=[handler], force=True)


def _series_line(series: str, report: GpuReport) -> str:
    if report.gpus:
        names = ", ".join(sorted({g.name for g in report.gpus}))
        return f"series {series}: {len(report.gpus)} GPU(s) ({names})"
    return f"series {series}: {report.reason}"


def _next_steps(
    cfg: Config,
    url: str,
    gw: Gateway,
    admin_token: str | None,
    series: str = "",
    https: str = "",
) -> str:
    lines = [
        f"aigw gateway listening on {url}  (state: {cfg.state_dir})",
        *([https] if https else []),
        *([series] if series else []),
        f"admin API: {url}/admin/v1 (token) and {cfg.state_dir / SOCKET_NAME} (local, no token)",
        "",
    ]
    if admin_token is not None and sys.stdout.isatty():
        lines += [
            "First start: an admin token was created. It is shown only this once; keep it:",
            f"  {admin_token}",
            "",
        ]
    elif admin_token is not None:  # stdout is a log (the journal): no secret there
        lines += [
            f"First start: an admin token was created; it is in {cfg.state_dir / FIRST_TOKEN}"
            " until the console shows it (`aigw console`).",
            "",
        ]
    if not gw.snapshot.models or not len(gw.keys):
        lines += [
            "Next steps:",
            "  1. add a provider and give it its API key (stored encrypted in the vault):",
            "       aigw providers add openai --kind openai",
            "       aigw providers set-key openai        # reads the key from stdin",
            "  2. add a model alias:",
            "       aigw models add gpt-4o-mini --provider openai --upstream-model gpt-4o-mini",
            "  3. create a department, a project and a key for an application:",
            "       aigw departments add eng && aigw projects add demo --department eng",
            "       aigw keys create --project demo --name my-app   # prints sk-aigw-...",
            "  4. call it:",
            f"       curl {url}/v1/chat/completions -H 'Authorization: Bearer sk-aigw-...' \\",
            "         -H 'Content-Type: application/json' \\",
            '         -d \'{"model": "gpt-4o-mini", '
            '"messages": [{"role": "user", "content": "Hi"}]}\'',
        ]
    else:
        lines.append(
            f"Serving {len(gw.snapshot.models)} models: {', '.join(sorted(gw.snapshot.models))}"
        )
        lines.append(f"OpenAI SDK: base_url={url}/v1   Anthropic SDK: base_url={url}")
    if gw.vault is not None and gw.vault.sealed:
        lines.append("The vault is sealed: run `aigw vault unseal` to use provider keys.")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def _start_https(
    cfg: Config, runner: web.AppRunner, gw: Gateway
) -> tuple[LiveTls, Callable[[], Awaitable[str]]]:
    """Serve HTTPS on [tls] with the box certificate; returns it and its reload."""
    try:
        live = LiveTls(cfg.tls_cert_file, cfg.tls_key_file)
    except TlsError as exc:
        raise ConfigError(f"HTTPS cannot start: {exc}") from None
    site = web.TCPSite(runner, cfg.tls.host, cfg.tls.port, ssl_context=live.context, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen for HTTPS on {cfg.tls.host}:{cfg.tls.port}: {exc.strerror or exc}; "
            "change [tls] port or stop whatever uses it"
        ) from None

    async def reload() -> str:
        """Load the certificate files into the live context; tell the hooks when it changed."""
        before = live.info.fingerprint
        info = live.reload()  # a few ms; on the loop, so no handshake sees half a change
        if info.fingerprint != before:
            log.warning("tls: now serving certificate %s (was %s)", info.fingerprint, before)
            for hook in list(gw.on_tls_change):
                try:
                    await hook(info.fingerprint)
                except Exception:
                    log.exception("tls: a certificate-change hook failed")
        return info.fingerprint

    gw.tls_reload = reload
    return live, reload


async def _keep_cert_fresh(
    cfg: Config, hostname: str, reload: Callable[[], Awaitable[str]]
) -> None:
    """A box runs for months: renew its own certificate before it expires, not only at start.
    A new one is served on new connections at once, and the mDNS fingerprint follows."""
    while True:
        await asyncio.sleep(cfg.tls.renew_check_s)
        try:
            _, made = await asyncio.to_thread(
                ensure_box_cert, cfg.tls_cert_file, cfg.tls_key_file, hostname
            )
            if made:
                await reload()
        except (OSError, ApplianceError) as exc:
            log.error("tls: the certificate check failed, the box serves on: %s", exc)


def _on_sighup(reload: Callable[[], Awaitable[str]]) -> None:
    async def run() -> None:
        try:
            await reload()
        except ApplianceError as exc:
            log.error("tls: reload on SIGHUP failed, the old certificate stays: %s", exc)

    asyncio.get_running_loop().create_task(run(), name="aigw-tls-reload")


async def _advertise(
    cfg: Config, gw: Gateway, ident: Identity, fingerprint: str
) -> Advertiser | None:
    """Announce the box by mDNS once it listens; a failure is logged, the gateway serves on."""
    if not cfg.discovery.enabled:
        return None
    port = cfg.tls.port if cfg.tls.enabled else cfg.server.port
    info = BoxInfo(
        instance=cfg.discovery.instance or ident.hostname,
        appliance_id=ident.appliance_id,
        version=_version(),
        series=gw.series,
        port=port,
        fingerprint=fingerprint,
        admin_url=f"https://{ident.hostname}.local:{port}/admin/v1",
        hostname=ident.hostname,
    )
    adv = Advertiser(info, cfg.discovery_interfaces or None)
    try:
        await adv.start()
    except DiscoveryError as exc:
        log.error("mdns: not advertised: %s", exc)
        return None

    async def follow(new_fingerprint: str) -> None:
        await adv.update(replace(adv.info, fingerprint=new_fingerprint))

    gw.on_tls_change.append(follow)
    gw.mdns_instance = adv.name
    return adv


def _watch_media(cfg: Config) -> MediaWatcher | None:
    """Seed sticks, model bundles and backups plugged in while `aigw up` runs (the box uses
    udev's aigw-media@.service instead); without udev the gateway serves on and says so."""
    if not cfg.provisioning.watch_media:
        return None
    watcher = MediaWatcher(cfg, cli_handler(cfg))
    try:
        watcher.start()
    except (ImportError, OSError) as exc:
        log.error("media: not watching for USB media: %s", exc)
        return None
    return watcher


async def serve(cfg: Config, ready: asyncio.Event | None = None) -> str | None:
    """Run the gateway until SIGINT or SIGTERM; returns why it stopped to be started again
    (a restore or factory reset asked for through the admin API), None otherwise."""
    # A factory reset or a restore asked for through the admin API, or one stopped half-way
    # (power cut), is done before anything reads the state.
    for line in await asyncio.to_thread(finish_pending, cfg):
        log.warning("start: %s", line)
    first = await asyncio.to_thread(provision, cfg)  # first boot's steps, once per box
    admin_token = None if first.already else first.admin_token
    # The box's own certificate is renewed near expiry; a company one is only checked.
    cert, _ = await asyncio.to_thread(
        ensure_box_cert, cfg.tls_cert_file, cfg.tls_key_file, first.identity.hostname
    )
    db = open_store(cfg.database_path)
    try:
        vault = open_vault(cfg)
    except VaultError as exc:
        raise ConfigError(f"the vault cannot be opened: {exc}") from None
    report = await asyncio.to_thread(probe)  # NVML: which GPUs, hence the series
    series = resolve_series(cfg.box.series, report)
    gw = Gateway(cfg, db, vault)
    gw.series = series
    engines = EngineManager(cfg, gw, len(report.gpus))
    await asyncio.to_thread(gw.gpus.read)  # NVML's first start (~100 ms) off the loop
    register_gpu_metrics(gw.metrics.registry, gw.gpus, cfg.box.series)
    app = create_app(gw)
    stop = asyncio.Event()
    app[RESTART] = restart = Restart(stop.set)
    # One access line per request is off by default: the ledger already records every one.
    access = logging.getLogger("aigw.access") if cfg.log.access_log else None
    runner = web.AppRunner(app, handler_cancellation=True, access_log=access)
    await runner.setup()
    site = web.TCPSite(runner, cfg.server.host, cfg.server.port, backlog=1024)
    try:
        await site.start()
        await start_admin_socket(runner, cfg.state_dir)
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {cfg.server.host}:{cfg.server.port} or on the admin socket in "
            f"{cfg.state_dir}: {exc.strerror or exc}; change [server] port or stop whatever "
            "uses it"
        ) from None
    url = _url("http", cfg.server.host, cfg.server.port)
    loop = asyncio.get_running_loop()
    https = ""
    renewer: asyncio.Task[None] | None = None
    fingerprint = cert.fingerprint
    if cfg.tls.enabled:
        try:
            live, reload = await _start_https(cfg, runner, gw)
        except BaseException:
            await runner.cleanup()
            raise
        fingerprint = live.info.fingerprint
        https = (
            f"HTTPS on {_url('https', cfg.tls.host, cfg.tls.port)}  "
            f"(certificate SHA-256 {fingerprint})"
        )
        loop.add_signal_handler(signal.SIGHUP, _on_sighup, reload)
        renewer = loop.create_task(
            _keep_cert_fresh(cfg, first.identity.hostname, reload), name="aigw-tls-renew"
        )
    await engines.start()  # the engines of enabled models start; ready ones join routing
    # --- the appliance shell, once listening: mDNS, systemd readiness and watchdog ----------
    advertiser = await _advertise(cfg, gw, first.identity, fingerprint)
    media = _watch_media(cfg)
    notify("READY=1", "STATUS=serving")
    watchdog, status = Watchdog(), StatusReporter(gw)
    watchdog.start()
    status.start()
    # -------------------------------------------------------------------------------------------
    series_line = _series_line(series, report)
    print(_next_steps(cfg, url, gw, admin_token, series_line, https), flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tune_gc()
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        notify("STOPPING=1")
        watchdog.stop()
        if renewer is not None:
            renewer.cancel()
        status.stop()
        if media is not None:
            media.stop()
        if advertiser is not None:
            await advertiser.stop()  # goodbye packets before the sockets close
        await engines.stop()  # no engine outlives the gateway
        await runner.cleanup()
        (cfg.state_dir / SOCKET_NAME).unlink(missing_ok=True)
        db.conn.close()
    return restart.reason


def run(cfg: Config) -> None:
    """Blocking entry point with uvloop."""
    setup_logging(cfg)
    reason = uvloop.run(serve(cfg))
    if reason is not None:
        # A failure status, so that systemd (Restart=on-failure) starts the gateway again.
        print(
            f"aigw: the gateway stopped for the {reason}, which is done as it starts again: "
            "run `aigw up` again (the box's systemd unit restarts it by itself)",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(RESTART_EXIT)
