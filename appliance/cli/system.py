"""`aigw firstboot`, `aigw identity` and `aigw tls show|install`: the box's own setup."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from appliance.admin_client import AdminAPIError
from appliance.cli._common import Ctx, SubParsers, add_json, emit_object
from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.identity import load_identity, read_marker
from provisioning.firstboot import FIRST_TOKEN, hand_to_owner, provision
from provisioning.offline import gateway_running
from provisioning.pending import finish_pending, reset_pending
from provisioning.tls import TlsError, cert_info, check_install, write_pair


def register_system(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw firstboot`, `aigw identity` and `aigw tls ...`."""
    fb = sub.add_parser(
        "firstboot",
        parents=[common],
        help="finish a pending factory reset or restore, then provision this box (identity, "
        "keys, TLS, vault, first admin token); idempotent",
    )
    fb.set_defaults(func=firstboot)
    ident = sub.add_parser("identity", parents=[common], help="the box's id and hostname")
    add_json(ident)
    ident.set_defaults(func=identity)
    tls = sub.add_parser("tls", parents=[common], help="the HTTPS certificate")
    actions = tls.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", parents=[common], help="the certificate in place")
    add_json(show)
    show.set_defaults(func=tls_show)
    install = actions.add_parser(
        "install", parents=[common], help="install a company-issued certificate and its key"
    )
    install.add_argument("cert", help="PEM certificate (the leaf first; a chain may follow)")
    install.add_argument("key", help="PEM private key of the certificate, unencrypted")
    install.add_argument("--chain", help="PEM intermediate certificates to serve after the leaf")
    add_json(install)
    install.set_defaults(func=tls_install)


def _finish_pending(cfg: Config) -> None:
    """A factory reset or restore the admin API left for the next start, done here as root."""
    if gateway_running(cfg):
        if reset_pending(cfg):
            print("a factory reset is pending: it is done when the gateway stops")
        return  # a staged restore must not be swapped in under a serving gateway either
    was_reset = reset_pending(cfg)
    for line in finish_pending(cfg):
        print(line)
    if was_reset:
        # Run as the gateway's ExecStopPost, this process inherited the gateway's
        # CREDENTIALS_DIRECTORY: the wiped box's TPM-sealed KEK. The new vault gets a new one.
        os.environ.pop("CREDENTIALS_DIRECTORY", None)


def firstboot(ctx: Ctx) -> None:
    """firstboot: finish pending work, run the missing steps, hand the state to its owner; the
    first admin token is printed when just made."""
    try:
        _finish_pending(ctx.cfg)
        result = provision(ctx.cfg)
    finally:
        # Root made or moved files in the aigw-owned state directory: the gateway must own them.
        hand_to_owner(ctx.cfg.state_dir)
    ident = result.identity
    if result.already:
        print(f"{ident.hostname} ({ident.appliance_id}) was provisioned at {result.at}")
        return
    print(f"provisioned {ident.hostname} ({ident.appliance_id}) at {result.at}")
    for step, outcome in result.steps.items():
        print(f"  {step:<12} {outcome}")
    if result.fingerprint:
        print(f"TLS certificate SHA-256: {result.fingerprint}")
    if result.admin_token:
        _show_first_token(ctx, result.admin_token)


def _show_first_token(ctx: Ctx, token: str) -> None:
    """On a terminal (an admin ran it by hand) the token is shown; under systemd stdout is the
    journal, which must hold no secret: the console shows it once from the root-only file."""
    if sys.stdout.isatty():
        print("The first admin token (shown once; the console can also show it once):")
        print(f"  {token}")
        return
    path = ctx.cfg.state_dir / FIRST_TOKEN
    print(f"The first admin token is in {path} until the console shows it (`aigw console`).")


def identity(ctx: Ctx) -> None:
    """identity: id, hostname, when made and when provisioned."""
    ident = load_identity(ctx.cfg.state_dir)
    if ident is None:
        raise ApplianceError(f"{ctx.cfg.state_dir} has no identity yet; run `aigw firstboot`")
    marker = read_marker(ctx.cfg.state_dir)
    emit_object(
        ctx,
        {
            "appliance_id": ident.appliance_id,
            "hostname": ident.hostname,
            "created_at": ident.created_at,
            "provisioned_at": (marker or {}).get("at") or None,
        },
    )


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ApplianceError(f"cannot read the {what} {path}: {exc.strerror}") from None


def tls_show(ctx: Ctx) -> None:
    """tls show: fingerprint, names, validity, and whose certificate it is."""
    path = ctx.cfg.tls_cert_file
    try:
        info = cert_info(path.read_bytes())
    except FileNotFoundError:
        raise ApplianceError(f"there is no certificate at {path}; run `aigw firstboot`") from None
    data = {
        **info.to_dict(),
        "kind": "self-signed (the box's own)" if info.self_signed else "company-issued",
        "enabled": ctx.cfg.tls.enabled,
        "path": str(path),
    }
    emit_object(ctx, data)


def _reload(ctx: Ctx) -> str:
    """Ask a running gateway to serve the new pair; a note on what happened."""
    if ctx.client.in_process:
        return "no gateway is running; it serves the new certificate when it starts"
    try:
        fp = ctx.call("POST", "/system/tls/reload")["fingerprint"]
    except AdminAPIError as exc:
        if exc.code == "tls_disabled":
            return "the running gateway serves no HTTPS ([tls] enabled = false)"
        raise
    return f"the running gateway now serves {fp}"


def tls_install(ctx: Ctx) -> None:
    """tls install: validate, install atomically, reload; a refusal changes nothing."""
    cert_pem = _read(ctx.args.cert, "certificate")
    if ctx.args.chain:
        cert_pem = cert_pem.rstrip(b"\n") + b"\n" + _read(ctx.args.chain, "chain")
    key_pem = _read(ctx.args.key, "key")
    ident = load_identity(ctx.cfg.state_dir)
    hostname = ident.hostname if ident is not None else "aigw"
    try:
        info, warnings = check_install(cert_pem, key_pem, hostname)
    except TlsError as exc:
        raise ApplianceError(f"certificate refused, the old one stays: {exc}") from None
    for warning in warnings:
        print(f"aigw: warning: {warning}", file=sys.stderr)
    cert_file, key_file = ctx.cfg.tls_cert_file, ctx.cfg.tls_key_file
    old = (cert_file.read_bytes(), key_file.read_bytes()) if cert_file.is_file() else None
    write_pair(cert_file, key_file, cert_pem, key_pem)
    try:
        note = _reload(ctx)
    except ApplianceError as exc:
        if old is not None:  # the gateway would not load it: put the previous pair back
            write_pair(cert_file, key_file, old[0], old[1])
        raise ApplianceError(
            f"the gateway refused the certificate, the old one stays: {exc}"
        ) from None
    emit_object(
        ctx,
        {**info.to_dict(), "reload": note},
        f"installed {info.subject} (SHA-256 {info.fingerprint}, until {info.not_after}); {note}",
    )
