"""mDNS/DNS-SD: the box advertises itself on the LAN, and LAN apps find it.

The gateway registers one instance under `_aigw._tcp.local.` (what `discover()` browses) and the
same instance under `_https._tcp.local.` (what generic browsers list), with a host record
`<hostname>.local.` for its addresses. The TXT record (RFC 6763) carries what a client needs to
call the box safely: `txtvers=1`, `id`, `ver`, `series`, `api=/v1`, `tls=1`, `fp` (SHA-256 of the
TLS certificate, to pin it), `auth=key`, `adminurl`. Models are not advertised: clients ask
`/v1/models`. Everything is IPv4 only; tests bind to `interfaces=["127.0.0.1"]`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from zeroconf import (
    BadTypeInNameException,
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from appliance.errors import ApplianceError

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.identity import Identity

__all__ = [
    "HTTPS_TYPE",
    "SERVICE_TYPE",
    "Advertiser",
    "BoxInfo",
    "DiscoveryError",
    "FoundBox",
    "box_info",
    "check_txt",
    "discover",
    "lan_addresses",
    "txt_record",
]

SERVICE_TYPE = "_aigw._tcp.local."
HTTPS_TYPE = "_https._tcp.local."
TXT_VERSION = "1"
# RFC 6763 §6.1: each TXT string is one length byte and at most 255 bytes of key=value.
MAX_TXT_PAIR = 255
# RFC 6763 §6.2: keep the whole record small enough for one packet.
MAX_TXT_TOTAL = 1300
# RFC 6763 §6.4: a key is printable US-ASCII without '='; 9 characters or fewer is advised.
_TXT_KEY = re.compile(r"[\x20-\x3c\x3e-\x7e]{1,9}")
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# How long one resolution of a found instance may take, in milliseconds.
_RESOLVE_MS = 1500


class DiscoveryError(ApplianceError):
    """The advertisement cannot be made (bad TXT value, bad name or interface) or mDNS failed."""


@dataclass
class BoxInfo:
    """What the box advertises: its instance name, identity, API port and certificate pin."""

    instance: str
    appliance_id: str
    version: str
    series: str
    port: int
    fingerprint: str
    admin_url: str
    addresses: list[str] = field(default_factory=list)
    # The host record's label (`aigw-3f9c` → aigw-3f9c.local.); empty: the instance name.
    hostname: str = ""


@dataclass
class FoundBox:
    """One box seen on the network, as a LAN app uses it (url is https://address:port)."""

    name: str
    url: str
    addresses: list[str]
    port: int
    series: str
    appliance_id: str
    version: str
    fingerprint: str
    admin_url: str
    hostname: str = ""
    txt: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for JSON output."""
        return asdict(self)


def box_info(
    cfg: Config, ident: Identity, *, fingerprint: str, version: str, series: str
) -> BoxInfo:
    """This box's advertisement: [discovery] instance (else the hostname) on the [tls] port."""
    port = cfg.tls.port
    return BoxInfo(
        instance=cfg.discovery.instance or ident.hostname,
        appliance_id=ident.appliance_id,
        version=version,
        series=series,
        port=port,
        fingerprint=fingerprint,
        admin_url=f"https://{ident.hostname}.local:{port}/admin/v1",
        addresses=lan_addresses(cfg.discovery_interfaces),
        hostname=ident.hostname,
    )


# --- TXT -------------------------------------------------------------------------------------


def txt_record(info: BoxInfo) -> dict[str, str]:
    """The TXT key/value pairs for `info`, checked against RFC 6763's limits."""
    fp = info.fingerprint.lower().replace(":", "")
    if not _HEX64.fullmatch(fp):
        raise DiscoveryError(
            f"certificate fingerprint {info.fingerprint!r} is not a SHA-256 in hex (64 digits)"
        )
    txt = {
        "txtvers": TXT_VERSION,
        "id": info.appliance_id,
        "ver": info.version,
        "series": info.series,
        "api": "/v1",
        "tls": "1",
        "fp": fp,
        "auth": "key",
        "adminurl": info.admin_url,
    }
    check_txt(txt)
    return txt


def check_txt(txt: dict[str, str]) -> None:
    """Raise DiscoveryError unless every pair and the whole record fit RFC 6763."""
    total = 0
    for key, value in txt.items():
        if not _TXT_KEY.fullmatch(key):
            raise DiscoveryError(f"TXT key {key!r} must be 1-9 printable ASCII characters, no '='")
        size = len(key.encode()) + 1 + len(value.encode())
        if size > MAX_TXT_PAIR:
            raise DiscoveryError(
                f"TXT pair {key}=... is {size} bytes; RFC 6763 allows {MAX_TXT_PAIR} at most"
            )
        total += 1 + size
    if total > MAX_TXT_TOTAL:
        raise DiscoveryError(f"TXT record is {total} bytes; keep it under {MAX_TXT_TOTAL}")


def _decode_txt(properties: dict[bytes, bytes | None]) -> dict[str, str]:
    """TXT pairs as text; a key without '=' has the empty value, undecodable bytes are replaced."""
    return {
        k.decode("utf-8", "replace").lower(): (v or b"").decode("utf-8", "replace")
        for k, v in properties.items()
    }


# --- addresses and interfaces ----------------------------------------------------------------


def _interface_choice(interfaces: list[str] | None) -> InterfaceChoice | list[str]:
    """zeroconf's interfaces argument: the given IPv4 addresses, or every interface."""
    if not interfaces:
        return InterfaceChoice.All
    for address in interfaces:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise DiscoveryError(
                f"mDNS interface {address!r} is not an IPv4 address (give the interface's address)"
            ) from None
    return list(interfaces)


def _open(interfaces: list[str] | None) -> AsyncZeroconf:
    """An IPv4 AsyncZeroconf on `interfaces` (all when empty); a clear error for a bad one."""
    choice = _interface_choice(interfaces)
    try:
        return AsyncZeroconf(interfaces=choice, ip_version=IPVersion.V4Only)
    except OSError as exc:
        where = ", ".join(interfaces or []) or "any interface"
        raise DiscoveryError(
            f"cannot use mDNS on {where}: {exc.strerror or exc} "
            "(is that address on an interface of this host?)"
        ) from None


def lan_addresses(interfaces: list[str] | None = None) -> list[str]:
    """The IPv4 addresses to publish: the given ones, else every non-loopback one of the host."""
    if interfaces:
        return list(interfaces)
    import ifaddr  # zeroconf's own dependency; only needed when no addresses are configured

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.IPv4Address(ip.ip).is_loopback:
                found.append(ip.ip)
    return sorted(set(found), key=ipaddress.IPv4Address)


def _host_label(info: BoxInfo) -> str:
    label = (info.hostname or info.instance).strip().lower()
    if not _HOST_LABEL.fullmatch(label):
        raise DiscoveryError(
            f"mDNS host name {label!r} is not a DNS label (letters, digits, hyphens, 1-63)"
        )
    return label


def _check_instance(instance: str) -> str:
    """RFC 6763 §4.1.1: an instance name is 1-63 bytes of UTF-8 without control characters."""
    if not instance or len(instance.encode()) > 63 or any(ord(c) < 0x20 for c in instance):
        raise DiscoveryError(f"mDNS instance name {instance!r} must be 1-63 bytes, no controls")
    return instance


# --- advertising -----------------------------------------------------------------------------


class Advertiser:
    """Registers the box under _aigw._tcp and _https._tcp; renames itself on a name conflict."""

    def __init__(self, info: BoxInfo, interfaces: list[str] | None = None) -> None:
        self._info = info
        self._interfaces = interfaces
        self._instance = _check_instance(info.instance)
        self._zc: AsyncZeroconf | None = None
        self._registered: list[ServiceInfo] = []

    @property
    def name(self) -> str:
        """The instance name actually registered (after any conflict renaming)."""
        return self._instance

    @property
    def info(self) -> BoxInfo:
        """What is advertised now."""
        return self._info

    def _service(self, type_: str, instance: str, info: BoxInfo) -> ServiceInfo:
        addresses = info.addresses or lan_addresses(self._interfaces)
        if not addresses:
            raise DiscoveryError("no IPv4 address to advertise: give [discovery] interfaces")
        try:
            packed = [socket.inet_aton(a) for a in addresses]
        except OSError:
            raise DiscoveryError(f"bad IPv4 address among {addresses}") from None
        if not 0 < info.port < 65536:
            raise DiscoveryError(f"mDNS port must be 1-65535, got {info.port}")
        return ServiceInfo(
            type_,
            f"{instance}.{type_}",
            port=info.port,
            properties=txt_record(info),
            server=f"{_host_label(info)}.local.",
            addresses=packed,
        )

    async def start(self) -> None:
        """Probe, register and announce both services (a few seconds: RFC 6762 probing)."""
        if self._zc is not None:
            return
        # Everything is validated before a socket is opened.
        _interface_choice(self._interfaces)
        primary = self._service(SERVICE_TYPE, self._instance, self._info)
        self._zc = _open(self._interfaces)
        try:
            await self._register(primary)
            # The _aigw name may have been renamed: keep the _https twin under the same name.
            self._instance = primary.name[: -len(SERVICE_TYPE) - 1]
            await self._register(self._service(HTTPS_TYPE, self._instance, self._info))
        except BaseException:
            await self.stop()
            raise

    async def _register(self, service: ServiceInfo) -> None:
        assert self._zc is not None
        try:
            done = await self._zc.async_register_service(service, allow_name_change=True)
            await done
        except (NonUniqueNameException, BadTypeInNameException) as exc:
            raise DiscoveryError(f"mDNS registration of {service.name!r} failed: {exc}") from None
        self._registered.append(service)

    async def update(self, info: BoxInfo) -> None:
        """Re-announce changed records (a new certificate's fingerprint, version, addresses)."""
        if self._zc is None:
            self._info = info
            self._instance = _check_instance(info.instance)
            return
        fresh = [self._service(s.type, self._instance, info) for s in self._registered]
        self._info = info
        for old, new in zip(list(self._registered), fresh, strict=True):
            if old.server != new.server:
                # A new host name is a different set of records: withdraw, then register anew.
                await (await self._zc.async_unregister_service(old))
                self._registered.remove(old)
                await self._register(new)
            else:
                await (await self._zc.async_update_service(new))
                self._registered[self._registered.index(old)] = new

    async def stop(self) -> None:
        """Send goodbye packets for both services and close the sockets."""
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            await zc.async_unregister_all_services()
        finally:
            self._registered.clear()
            await zc.async_close()


# --- discovering -----------------------------------------------------------------------------


def _found(service: AsyncServiceInfo) -> FoundBox:
    txt = _decode_txt(service.properties)
    addresses = service.parsed_addresses(IPVersion.V4Only)
    host = addresses[0] if addresses else (service.server or "").rstrip(".")
    port = service.port or 0
    return FoundBox(
        name=service.name[: -len(SERVICE_TYPE) - 1],
        url=f"https://{host}:{port}",
        addresses=addresses,
        port=port,
        series=txt.get("series", ""),
        appliance_id=txt.get("id", ""),
        version=txt.get("ver", ""),
        fingerprint=txt.get("fp", "").lower(),
        admin_url=txt.get("adminurl", ""),
        hostname=(service.server or "").rstrip("."),
        txt=txt,
    )


async def discover(timeout: float = 3.0, interfaces: list[str] | None = None) -> list[FoundBox]:
    """The boxes answering on the LAN within `timeout` seconds, one per appliance id, by name."""
    names: dict[str, bool] = {}

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        names[name] = state_change is not ServiceStateChange.Removed

    aiozc = _open(interfaces)
    try:
        browser = AsyncServiceBrowser(aiozc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
        try:
            await asyncio.sleep(max(timeout, 0.0))
        finally:
            await browser.async_cancel()
        infos = [AsyncServiceInfo(SERVICE_TYPE, n) for n, alive in sorted(names.items()) if alive]
        # The browse answers usually carried SRV/TXT/A already; this asks only for what's missing.
        zc = aiozc.zeroconf
        resolved = await asyncio.gather(*(i.async_request(zc, _RESOLVE_MS) for i in infos))
    finally:
        await aiozc.async_close()
    boxes: dict[str, FoundBox] = {}
    for service, ok in zip(infos, resolved, strict=True):
        if not ok or service.port is None:
            continue
        box = _found(service)
        boxes.setdefault(box.appliance_id or box.name, box)
    return sorted(boxes.values(), key=lambda b: b.name)
