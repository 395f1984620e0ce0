"""`aigw up` with [tls]: HTTPS with the box certificate, plain HTTP on loopback, certificate
renewal at start, replacement by `aigw tls install`, reload on SIGHUP."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from provisioning.tls import cert_fingerprint, cert_info, make_self_signed, write_pair
from tests.appliance.test_up import UnixHTTPConnection, call
from tests.harness import free_port
from tests.provisioning.test_tls import company_cert

pytestmark = pytest.mark.slow
AIGW = str(Path(sys.executable).with_name("aigw"))


class TlsBox:
    def __init__(self, tmp: Path, server_host: str = "127.0.0.1", tls_extra: str = "") -> None:
        self.state = tmp / "state"
        self.port, self.tls_port = free_port(), free_port()
        self.config = tmp / "aigw.toml"
        self.config.write_text(
            f'[server]\nhost = "{server_host}"\nport = {self.port}\n'
            f'[tls]\nenabled = true\nhost = "127.0.0.1"\nport = {self.tls_port}\n{tls_extra}'
            f'[state]\ndir = "{self.state}"\n[log]\nlevel = "debug"\n'
        )
        self.env = {**os.environ, "AIGW_CONFIG": str(self.config)}
        self.stderr = tmp / "up.err"
        self.cert = self.state / "tls" / "cert.pem"
        self.key = self.state / "tls" / "key.pem"

    def start(self) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [AIGW, "up"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.stderr.open("a"),
            text=True,
        )
        assert proc.stdout is not None
        out = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "Press Ctrl-C" in line:
                return proc, "".join(out)
        proc.kill()
        raise AssertionError("aigw up did not start:\n" + "".join(out) + self.stderr.read_text())

    def served_fingerprint(self) -> str:
        """SHA-256 of the certificate a fresh TLS connection gets (no verification)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", self.tls_port), timeout=10) as raw,
            ctx.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()

    def sock(self) -> UnixHTTPConnection:
        return UnixHTTPConnection(str(self.state / "admin.sock"))

    def aigw(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIGW, *args], env=self.env, capture_output=True, text=True, timeout=60
        )


def wait_for(fn: object, expected: str) -> None:
    deadline = time.monotonic() + 5
    while fn() != expected:  # type: ignore[operator]
        assert time.monotonic() < deadline, "the served certificate did not change"
        time.sleep(0.05)


def test_https_sdk_install_and_sighup(tmp_path: Path) -> None:
    box = TlsBox(tmp_path)
    proc, banner = box.start()
    try:
        fp = cert_fingerprint(box.cert.read_bytes())
        assert fp in banner and f"https://127.0.0.1:{box.tls_port}" in banner
        assert box.served_fingerprint() == fp
        # A key for an app, then the official SDK over HTTPS with the box certificate as CA.
        s = box.sock()
        for path, body in (
            ("/departments", {"name": "eng"}),
            ("/projects", {"name": "p", "department": "eng"}),
        ):
            assert call(s, "POST", path, body)[0] == 201
        status, key = call(s, "POST", "/keys", {"name": "app", "project": "p"})
        assert status == 201
        verify = ssl.create_default_context(cafile=str(box.cert))
        client = openai.OpenAI(
            base_url=f"https://127.0.0.1:{box.tls_port}/v1",
            api_key=key["secret"],
            max_retries=0,
            http_client=openai.DefaultHttpxClient(verify=verify, timeout=10),
        )
        deadline = time.monotonic() + 3  # the gateway picks up the new key within a second
        while True:
            try:
                assert client.models.list().data is not None
                break
            except openai.AuthenticationError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        # Plain HTTP stays on loopback.
        conn = http.client.HTTPConnection("127.0.0.1", box.port, timeout=10)
        conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key['secret']}"})
        assert conn.getresponse().status == 200
        # The system endpoint tells the certificate and its URLs.
        status, system = call(box.sock(), "GET", "/system")
        assert status == 200 and system["tls"]["fingerprint"] == fp
        assert system["tls"]["enabled"] and system["tls"]["self_signed"]
        assert system["urls"]["https"].endswith(f".local:{box.tls_port}")

        # Refusals leave the certificate in place.
        now = datetime.now(UTC)
        expired, expired_key, _ = company_cert(
            ["box.example.com"], now - timedelta(days=90), now - timedelta(days=1)
        )
        (tmp_path / "expired.pem").write_bytes(expired)
        (tmp_path / "expired.key").write_bytes(expired_key)
        (tmp_path / "other.key").write_bytes(make_self_signed("x", [])[1])
        for cert, key_file in (("expired.pem", "expired.key"), ("expired.pem", "other.key")):
            out = box.aigw("tls", "install", str(tmp_path / cert), str(tmp_path / key_file))
            assert out.returncode == 1 and out.stderr.startswith("aigw: error: certificate refused")
            assert "Traceback" not in out.stderr
        assert cert_fingerprint(box.cert.read_bytes()) == fp and box.served_fingerprint() == fp

        # A company certificate: installed, and served at once on new connections.
        leaf, leaf_key, ca = company_cert(
            ["gw.example.com"], now - timedelta(days=1), now + timedelta(days=365)
        )
        (tmp_path / "company.pem").write_bytes(leaf)
        (tmp_path / "company.key").write_bytes(leaf_key)
        (tmp_path / "ca.pem").write_bytes(ca)
        out = box.aigw(
            "tls",
            "install",
            str(tmp_path / "company.pem"),
            str(tmp_path / "company.key"),
            "--chain",
            str(tmp_path / "ca.pem"),
        )
        assert out.returncode == 0, out.stderr
        assert ".local" in out.stderr  # warned: the certificate does not name the box
        company_fp = cert_fingerprint(leaf)
        assert company_fp != fp and "now serves " + company_fp in out.stdout
        assert box.served_fingerprint() == company_fp
        assert stat_mode(box.key) == 0o600
        shown = box.aigw("tls", "show", "--json")
        assert '"company-issued"' in shown.stdout and company_fp in shown.stdout

        # SIGHUP reloads whatever the files hold now.
        own_cert, own_key = make_self_signed("aigw-test", [])
        write_pair(box.cert, box.key, own_cert, own_key)
        proc.send_signal(signal.SIGHUP)
        wait_for(box.served_fingerprint, cert_fingerprint(own_cert))
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_expired_own_certificate_is_renewed_at_start(tmp_path: Path) -> None:
    box = TlsBox(tmp_path)
    assert box.aigw("firstboot").returncode == 0
    old_cert, old_key = make_self_signed(
        "aigw-old", [], now=datetime.now(UTC) - timedelta(days=900)
    )
    write_pair(box.cert, box.key, old_cert, old_key)
    proc, _ = box.start()
    try:
        served = box.served_fingerprint()
        assert served != cert_fingerprint(old_cert)
        assert served == cert_fingerprint(box.cert.read_bytes())
        assert not cert_info(box.cert.read_bytes()).expired
    finally:
        proc.terminate()
        proc.wait(15)
    assert "renewed the box certificate" in box.stderr.read_text()


def test_a_running_box_renews_its_certificate_before_it_expires(tmp_path: Path) -> None:
    box = TlsBox(tmp_path, tls_extra="renew_check_s = 0.5\n")
    proc, _ = box.start()
    try:
        # The box's own certificate now has 10 days left (renewal is due at 30): the running
        # gateway replaces it without a restart and serves the new one.
        near_cert, near_key = make_self_signed("aigw-near", [], days=10)
        write_pair(box.cert, box.key, near_cert, near_key)
        deadline = time.monotonic() + 20
        while cert_fingerprint(box.cert.read_bytes()) == cert_fingerprint(near_cert):
            assert time.monotonic() < deadline, "the certificate was not renewed"
            time.sleep(0.1)
        renewed = box.cert.read_bytes()
        assert cert_info(renewed).days_left > 30
        wait_for(box.served_fingerprint, cert_fingerprint(renewed))
        # A company certificate is never replaced by the box, even near its expiry.
        now = datetime.now(UTC)
        company, company_key, _ = company_cert(
            ["aigw-x.local"], now - timedelta(days=300), now + timedelta(days=10)
        )
        write_pair(box.cert, box.key, company, company_key)
        time.sleep(1.5)  # three checks
        assert box.cert.read_bytes() == company
    finally:
        proc.terminate()
        proc.wait(15)
    assert "renewed the box certificate" in box.stderr.read_text()


def test_plain_http_must_stay_on_loopback_with_tls(tmp_path: Path) -> None:
    box = TlsBox(tmp_path, server_host="0.0.0.0")
    out = box.aigw("up")
    assert out.returncode == 1
    assert out.stderr.startswith("aigw: error:") and "loopback" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
