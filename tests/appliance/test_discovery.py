"""mDNS advertising and discovery on loopback only (interfaces=["127.0.0.1"], IPv4).

Nothing here multicasts on a real interface: every Zeroconf is bound to 127.0.0.1, whose
sockets send with IP_MULTICAST_IF=127.0.0.1. Where loopback carries no multicast, the module runs
itself again inside a private network namespace (`unshare -n`) that holds only `lo`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from appliance.config import parse_config
from appliance.discovery import (
    HTTPS_TYPE,
    MAX_TXT_PAIR,
    SERVICE_TYPE,
    Advertiser,
    BoxInfo,
    DiscoveryError,
    FoundBox,
    box_info,
    check_txt,
    discover,
    txt_record,
)
from appliance.identity import Identity
from tests.appliance.conftest import Cli
from tests.harness import LoopThread

LO = ["127.0.0.1"]
# The querying side (discover, browsers, a second box) binds another loopback address. Every
# Zeroconf on one address shares <address>:5353 (SO_REUSEPORT), and the kernel hands a unicast
# datagram to one member of that group, chosen by a hash of the addresses and a secret drawn at
# boot: the unicast answer to a QU question (first queries, probes) reached the advertiser's own
# socket instead of the asker's on some boots, so a 1 s discover found nothing and a conflict
# went unnoticed. On its own address the asker's socket is the only one such an answer can reach.
PEER = ["127.0.0.2"]
_NETNS_ENV = "AIGW_TEST_MDNS_NETNS"


def _loopback_multicast() -> bool:
    """Whether a datagram multicast on 127.0.0.1 comes back to a member joined on 127.0.0.1."""
    group = "239.255.42.99"  # organisation-local scope, sent on lo only
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        try:
            rx.bind((group, 0))
            mreq = socket.inet_aton(group) + socket.inet_aton("127.0.0.1")
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            rx.settimeout(1.0)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            tx.sendto(b"aigw-probe", (group, rx.getsockname()[1]))
            return rx.recv(64) == b"aigw-probe"
        except OSError:
            return False


LO_MULTICAST = _loopback_multicast()
IN_NETNS = os.environ.get(_NETNS_ENV) == "1"
needs_lo = pytest.mark.skipif(
    not (LO_MULTICAST or IN_NETNS),
    reason="no multicast on loopback here: test_in_private_netns runs these",
)


def _info(instance: str | None = None, **kw: object) -> BoxInfo:
    name = instance or f"aigw-t{secrets.token_hex(3)}"
    base = BoxInfo(
        instance=name,
        appliance_id=secrets.token_hex(16),
        version="0.1.0",
        series="G",
        port=8443,
        fingerprint=secrets.token_hex(32),
        admin_url=f"https://{name}.local:8443/admin",
        addresses=["127.0.0.1"],
        hostname=name,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def advertisers() -> AsyncIterator[list[Advertiser]]:
    """Advertisers a test starts; all stopped afterwards, whatever happened."""
    started: list[Advertiser] = []
    yield started
    await asyncio.gather(*(a.stop() for a in started))


async def _start(
    started: list[Advertiser], info: BoxInfo, interfaces: list[str] = LO
) -> Advertiser:
    adv = Advertiser(info, interfaces=interfaces)
    started.append(adv)
    await asyncio.wait_for(adv.start(), 15)
    return adv


def _by_id(boxes: list[FoundBox], appliance_id: str) -> FoundBox:
    matches = [b for b in boxes if b.appliance_id == appliance_id]
    assert len(matches) == 1, boxes
    return matches[0]


# --- TXT -------------------------------------------------------------------------------------


def test_txt_record_has_every_field_and_no_models() -> None:
    info = _info(fingerprint="AB:" * 31 + "AB")
    txt = txt_record(info)
    assert txt == {
        "txtvers": "1",
        "id": info.appliance_id,
        "ver": "0.1.0",
        "series": "G",
        "api": "/v1",
        "tls": "1",
        "fp": "ab" * 32,
        "auth": "key",
        "adminurl": info.admin_url,
    }


def test_txt_pair_over_255_bytes_is_refused() -> None:
    # "adminurl=" is 9 bytes: a 246-byte URL is the longest pair RFC 6763 allows.
    check_txt({"adminurl": "h" * (MAX_TXT_PAIR - 9)})
    with pytest.raises(DiscoveryError, match=r"adminurl=\.\.\. is 256 bytes"):
        txt_record(_info(admin_url="https://x/" + "a" * 237))
    with pytest.raises(DiscoveryError, match="256 bytes"):
        check_txt({"ver": "é" * 126})  # bytes, not characters, count


def test_txt_bad_key_fingerprint_and_total_are_refused() -> None:
    with pytest.raises(DiscoveryError, match="TXT key"):
        check_txt({"a=b": "1"})
    with pytest.raises(DiscoveryError, match="TXT key"):
        check_txt({"": "1"})
    with pytest.raises(DiscoveryError, match="not a SHA-256"):
        txt_record(_info(fingerprint="abc"))
    with pytest.raises(DiscoveryError, match="TXT record is"):
        check_txt({f"k{i}": "v" * 200 for i in range(7)})


def test_box_info_from_config_and_identity() -> None:
    ident = Identity("3f9c" + "0" * 28, "aigw-3f9c", "2025-01-01T00:00:00+00:00")
    cfg = parse_config({"tls": {"port": 9443}, "discovery": {"interfaces": "127.0.0.1"}})
    info = box_info(cfg, ident, fingerprint="ab" * 32, version="1.0", series="S")
    assert (info.instance, info.hostname, info.port) == ("aigw-3f9c", "aigw-3f9c", 9443)
    assert info.addresses == ["127.0.0.1"]
    assert info.admin_url == "https://aigw-3f9c.local:9443/admin/v1"
    named = parse_config({"discovery": {"instance": "Finance AI gateway"}})
    assert box_info(named, ident, fingerprint="ab" * 32, version="1", series="G").instance == (
        "Finance AI gateway"
    )
    assert txt_record(info)["series"] == "S"


async def test_bad_interface_and_names_are_refused_before_any_socket() -> None:
    with pytest.raises(DiscoveryError, match="not an IPv4 address"):
        await Advertiser(_info(), interfaces=["eth0"]).start()
    with pytest.raises(DiscoveryError, match="not a DNS label"):
        await Advertiser(_info(hostname="bad_host"), interfaces=LO).start()
    with pytest.raises(DiscoveryError, match="1-63 bytes"):
        Advertiser(_info(instance="x" * 64), interfaces=LO)
    with pytest.raises(DiscoveryError, match="not an IPv4 address"):
        await discover(0.1, interfaces=["::1"])


# --- on the wire (loopback) ------------------------------------------------------------------


@needs_lo
async def test_advertise_then_discover_finds_every_field(advertisers: list[Advertiser]) -> None:
    info = _info(series="S", version="1.2.3", port=9443)
    adv = await _start(advertisers, info)
    assert adv.name == info.instance
    box = _by_id(await discover(1.5, interfaces=PEER), info.appliance_id)
    assert box.name == info.instance
    assert box.url == "https://127.0.0.1:9443"
    assert (box.addresses, box.port) == (["127.0.0.1"], 9443)
    assert (box.series, box.version) == ("S", "1.2.3")
    assert box.fingerprint == info.fingerprint
    assert box.admin_url == info.admin_url
    assert box.hostname == f"{info.hostname}.local"
    assert box.txt["api"] == "/v1" and box.txt["tls"] == "1" and box.txt["auth"] == "key"
    assert box.txt["txtvers"] == "1"
    # The same instance is also a plain HTTPS service for generic browsers.
    aiozc = AsyncZeroconf(interfaces=PEER, ip_version=IPVersion.V4Only)
    try:
        https = await aiozc.async_get_service_info(HTTPS_TYPE, f"{adv.name}.{HTTPS_TYPE}", 3000)
    finally:
        await aiozc.async_close()
    assert https is not None and https.port == 9443
    assert https.properties[b"fp"] == info.fingerprint.encode()


@needs_lo
async def test_name_conflict_renames_the_second_and_both_are_found(
    advertisers: list[Advertiser],
) -> None:
    first = _info()
    second = _info(first.instance, hostname=first.instance + "-b", port=8444)
    a = await _start(advertisers, first)
    b = await _start(advertisers, second, PEER)  # hears the first's unicast defence
    assert a.name == first.instance
    assert b.name != a.name and b.name.startswith(first.instance + "-")
    boxes = await discover(1.5, interfaces=PEER)
    assert _by_id(boxes, first.appliance_id).name == a.name
    found_b = _by_id(boxes, second.appliance_id)
    assert (found_b.name, found_b.port) == (b.name, 8444)


@needs_lo
async def test_one_box_seen_twice_is_listed_once(advertisers: list[Advertiser]) -> None:
    info = _info()
    twin = _info(appliance_id=info.appliance_id)  # same box, a second (stale) instance name
    await asyncio.gather(_start(advertisers, info), _start(advertisers, twin))
    boxes = await discover(1.5, interfaces=PEER)
    assert [b.name for b in boxes if b.appliance_id == info.appliance_id] == [
        min(info.instance, twin.instance)
    ]


@needs_lo
async def test_stop_withdraws_the_record(advertisers: list[Advertiser]) -> None:
    info = _info()
    adv = await _start(advertisers, info)
    wanted = f"{adv.name}.{SERVICE_TYPE}"
    added, removed = asyncio.Event(), asyncio.Event()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if name == wanted:
            {ServiceStateChange.Added: added, ServiceStateChange.Removed: removed}.get(
                state_change, asyncio.Event()
            ).set()

    aiozc = AsyncZeroconf(interfaces=PEER, ip_version=IPVersion.V4Only)
    browser = AsyncServiceBrowser(aiozc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    try:
        await asyncio.wait_for(added.wait(), 5)
        await adv.stop()
        await asyncio.wait_for(removed.wait(), 5)  # the goodbye packet, not a TTL expiry
    finally:
        await browser.async_cancel()
        await aiozc.async_close()
    assert info.appliance_id not in [b.appliance_id for b in await discover(1.0, PEER)]


@needs_lo
async def test_update_reannounces_a_new_fingerprint(advertisers: list[Advertiser]) -> None:
    info = _info()
    adv = await _start(advertisers, info)
    assert _by_id(await discover(1.0, PEER), info.appliance_id).fingerprint == info.fingerprint
    wanted = f"{adv.name}.{SERVICE_TYPE}"
    updated = asyncio.Event()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if name == wanted and state_change is ServiceStateChange.Updated:
            updated.set()

    aiozc = AsyncZeroconf(interfaces=PEER, ip_version=IPVersion.V4Only)
    browser = AsyncServiceBrowser(aiozc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    try:
        await asyncio.sleep(0.5)  # the browser has seen the service before it changes
        new_fp = secrets.token_hex(32)
        await asyncio.wait_for(adv.update(replace(info, fingerprint=new_fp, version="0.2.0")), 10)
        # A listening browser hears the new TXT announced, without asking again.
        await asyncio.wait_for(updated.wait(), 5)
    finally:
        await browser.async_cancel()
        await aiozc.async_close()
    assert adv.name == info.instance
    box = _by_id(await discover(1.0, PEER), info.appliance_id)
    assert (box.fingerprint, box.version) == (new_fp, "0.2.0")


@needs_lo
def test_cli_discover_lists_the_box(cli: Cli) -> None:
    info = _info(series="S")
    lt = LoopThread()
    adv = Advertiser(info, interfaces=LO)
    try:
        lt.run(adv.start(), 15)
        r = cli.ok("discover", "--timeout", "1.5", "--interface", PEER[0], "--json")
        (row,) = [b for b in r.json if b["appliance_id"] == info.appliance_id]
        assert row["url"] == "https://127.0.0.1:8443"
        assert row["fingerprint"] == info.fingerprint and row["series"] == "S"
        table = cli.ok("discover", "--timeout", "1", "--interface", PEER[0]).out
        header, *lines = table.splitlines()
        assert header.split() == ["NAME", "URL", "SERIES", "FINGERPRINT"]
        assert any(
            line.split() == [info.instance, row["url"], "S", info.fingerprint] for line in lines
        )
    finally:
        lt.run(adv.stop(), 10)
        lt.stop()


def test_cli_discover_errors_are_one_line(cli: Cli) -> None:
    assert "not an IPv4 address" in cli.fails("discover", "--timeout", "0.1", "--interface", "eth0")
    assert cli("discover", "--timeout", "0").rc == 2
    # An address no interface of this host holds (TEST-NET-2): binding fails, nothing is sent.
    err = cli.fails("discover", "--timeout", "0.1", "--interface", "198.51.100.77")
    assert "cannot use mDNS on 198.51.100.77" in err


# --- where loopback has no multicast ---------------------------------------------------------


@pytest.mark.skipif(LO_MULTICAST, reason="loopback multicast works here: the tests ran directly")
@pytest.mark.skipif(IN_NETNS, reason="already in the private namespace")
def test_in_private_netns() -> None:
    """Run this module inside `unshare -n` (only a fresh `lo`, with a multicast route)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip for a private network namespace")
    root = Path(__file__).resolve().parents[2]
    script = (
        "ip link set lo up && ip link set lo multicast on && "
        "ip route add 224.0.0.0/4 dev lo && "
        f'exec "{sys.executable}" -m pytest -q -p no:cacheprovider "{__file__}"'
    )
    env = {**os.environ, _NETNS_ENV: "1"}
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
