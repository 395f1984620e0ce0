"""The TPM2 branch of the vault's KEK, for real: a software TPM (swtpm) on loopback, reached by
the real `systemd-creds` through its TCTI (`[vault] tpm2_device`).

First boot seals the KEK and writes the gateway's drop-in; what systemd does at the gateway's
start (decrypt the credential into $CREDENTIALS_DIRECTORY) is done here with the same tool; a
second TPM cannot unseal it; backups move the secrets to key-file and TPM boxes; a factory
reset drops the sealed key and the next first boot seals a new one.
"""

from __future__ import annotations

import ctypes.util
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.config import Config, load_config, parse_config
from appliance.errors import ConfigError
from appliance.identity import is_provisioned, load_identity
from appliance.vault import Vault, VaultError, open_vault
from provisioning.backup import create_backup
from provisioning.box_vault import credential_store, kek_for, recorded_kind
from provisioning.firstboot import FirstBootError, SystemPaths, provision
from provisioning.reset import factory_reset
from provisioning.restore import restore_backup
from tests.harness import free_port
from tests.provisioning.backup_box import FAST, PASSPHRASE, make_box

ROOT = Path(__file__).resolve().parents[2]
AIGW = str(Path(sys.executable).with_name("aigw"))
INSTALLED_AIGW = "/opt/aigw/venv/bin/aigw"
CREDENTIAL = "aigw-vault-kek"
SECRET = "sk-tpm-provider-secret-0123456789"


def _missing() -> str | None:
    """Why these tests cannot run here, or None."""
    for tool in ("swtpm", "systemd-creds"):
        if shutil.which(tool) is None:
            return f"no {tool} (scripts/host-packages.sh installs it)"
    for lib in ("tss2-tcti-swtpm", "tss2-esys", "tss2-rc", "tss2-mu"):
        if ctypes.util.find_library(lib) is None:
            return f"no lib{lib} (scripts/host-packages.sh installs it)"
    return None


needs_swtpm = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def port_pair() -> int:
    """A free loopback port P with P+1 free too: the swtpm TCTI reaches the control channel on
    the port after the server's."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two free consecutive ports on loopback")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"swtpm exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"swtpm is not listening on 127.0.0.1:{port}")


class SoftTpm:
    """One swtpm process on loopback with its own state directory.

    systemd 252's systemd-creds leaves a TPM session behind at each call. Behind the kernel's
    resource manager (/dev/tpmrm0, what a box uses) that is flushed when the call ends; the
    swtpm TCTI has no resource manager, so the TPM runs out of session slots after three calls
    ("out of memory for session contexts") until it is reset. `reboot()` restarts swtpm on the
    same state, as a box's reboot resets its TPM; the tests reboot where a box would restart.
    """

    def __init__(self, state: Path) -> None:
        self.state = state
        self.state.mkdir()
        self.port = port_pair()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def tcti(self) -> str:
        """The TPM as `--tpm2-device=` and `[vault] tpm2_device` take it."""
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> None:
        argv = [
            "swtpm", "socket", "--tpm2",
            "--tpmstate", f"dir={self.state}",
            "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
            "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
            "--flags", "not-need-init,startup-clear",
        ]  # fmt: skip
        with (self.state.parent / f"{self.state.name}.log").open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        _wait_listening(self.port, self.proc, time.monotonic() + 10)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def reboot(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def start_swtpm(tmp_path: Path) -> Iterator[Callable[[str], SoftTpm]]:
    """Start software TPMs under tmp_path on free loopback ports; stops only what it started."""
    tpms: list[SoftTpm] = []

    def start(name: str) -> SoftTpm:
        tpms.append(SoftTpm(tmp_path / f"swtpm-{name}"))
        return tpms[-1]

    yield start
    for tpm in tpms:
        tpm.stop()


def system_paths(root: Path) -> SystemPaths:
    """First boot's host paths inside the test's directory; the real systemd-creds."""
    return SystemPaths(
        etc_hostname=root / "etc-hostname",
        gateway_dropin=root / "system" / "aigw-gateway.service.d" / "50-vault-kek.conf",
    )


def tpm_box(root: Path, tcti: str) -> Config:
    """A box with `[vault] kek = "auto"` whose TPM is the software TPM at `tcti`, provisioned."""
    root.mkdir(parents=True)
    path = root / "aigw.toml"
    path.write_text(
        f'[state]\ndir = "{root / "state"}"\n\n[server]\nport = {free_port()}\n\n'
        f'[vault]\nkek = "auto"\ntpm2_device = "{tcti}"\n'
    )
    cfg = load_config(str(path))
    provision(cfg, system_paths(root))
    return cfg


def creds(tcti: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The real systemd-creds against the TPM at `tcti`."""
    argv = ["systemd-creds", *args[:1], f"--tpm2-device={tcti}", *args[1:]]
    return subprocess.run(argv, capture_output=True, timeout=60)


def unit_start(cfg: Config, tcti: str, creds_dir: Path) -> Path:
    """What systemd does for LoadCredentialEncrypted= when the gateway starts: the credential,
    decrypted with the real tool into the directory the unit gets as $CREDENTIALS_DIRECTORY."""
    creds_dir.mkdir(mode=0o700)
    out = creds_dir / CREDENTIAL
    done = creds(tcti, "decrypt", f"--name={CREDENTIAL}", str(credential_store(cfg)), str(out))
    assert done.returncode == 0, done.stderr.decode()
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_secrets(cfg: Config) -> dict[str, str | None]:
    """Every secret, read the way an admin command on the box reads them (one unseal, no
    $CREDENTIALS_DIRECTORY)."""
    kind = recorded_kind(cfg.vault_path)
    assert kind is not None
    with kek_for(cfg, kind) as kek:
        vault = Vault.open(cfg.vault_path, kek)
    return {info.id: vault.get(info.id) for info in vault.list()}


# --- the configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["", "/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321", "device:/dev/tpmrm1", "mssim:"],
)
def test_tpm2_device_accepts_what_systemd_creds_takes(value: str) -> None:
    cfg = parse_config({"vault": {"kek": "auto", "tpm2_device": value}})
    assert cfg.vault.tpm2_device == value


@pytest.mark.parametrize("value", ["auto", "list", "tpmrm0", "swt/pm:x", "/dev/tpm:0", "a b:c"])
def test_tpm2_device_rejects_the_rest(value: str) -> None:
    with pytest.raises(ConfigError, match=r"\[vault\] tpm2_device must be"):
        parse_config({"vault": {"tpm2_device": value}})


@pytest.mark.parametrize("value", ["/dev/tpm0", "device:/dev/tpm1"])
def test_a_tpm_without_resource_manager_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"resource manager.*/dev/tpmrm"):
        parse_config({"vault": {"tpm2_device": value}})


# --- first boot ---------------------------------------------------------------------------------


@needs_swtpm
def test_first_boot_seals_the_kek_and_the_unit_verifies(
    tmp_path: Path, start_swtpm: Callable[[str], SoftTpm]
) -> None:
    tpm = start_swtpm("a")
    cfg = tpm_box(tmp_path / "a", tpm.tcti)
    sys_paths = system_paths(tmp_path / "a")
    cred = credential_store(cfg)
    assert is_provisioned(cfg.state_dir)
    # has-tpm2 cannot see a TPM behind a TCTI: the configured one was taken as present.
    assert cred.is_file() and mode(cred) == 0o600 and mode(cred.parent) == 0o700
    assert not cfg.vault_key_file.exists()
    assert recorded_kind(cfg.vault_path) == "credential"
    marker = (cfg.state_dir / "provisioned").read_text()
    assert '"kek": "tpm2"' in marker
    assert sys_paths.gateway_dropin.read_text().splitlines()[1:] == [
        "[Service]",
        f"LoadCredentialEncrypted={CREDENTIAL}:{cred}",
    ]
    # The gateway's unit with that drop-in, as the box installs them.
    units = tmp_path / "units"
    (units / "aigw-gateway.service.d").mkdir(parents=True)
    for name in ("aigw-gateway.service", "aigw-firstboot.service"):
        text = (ROOT / "systemd" / name).read_text().replace(INSTALLED_AIGW, AIGW)
        (units / name).write_text(text)
    dropin = units / "aigw-gateway.service.d" / sys_paths.gateway_dropin.name
    shutil.copy(sys_paths.gateway_dropin, dropin)
    argv = ["systemd-analyze", "verify", str(units / "aigw-gateway.service")]
    argv.append(str(units / "aigw-firstboot.service"))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    # ... and verify reads the drop-in: a misspelt key there is reported.
    dropin.write_text(dropin.read_text().replace("LoadCredentialEncrypted", "LoadCredEncrypted"))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert "Unknown key 'LoadCredEncrypted'" in done.stderr
    # A first boot that runs again (marker lost) unseals the same key rather than making one.
    sealed = cred.read_bytes()
    (cfg.state_dir / "provisioned").unlink()
    again = provision(cfg, sys_paths)
    assert again.kek == "tpm2" and again.steps["vault"] == "kept"
    assert cred.read_bytes() == sealed


@needs_swtpm
def test_a_tpm_that_does_not_answer_fails_first_boot_without_a_key_file(tmp_path: Path) -> None:
    # Nothing listens there: sealing fails and first boot runs again later; no quiet fallback
    # to a key file that the admin did not ask for.
    with pytest.raises(FirstBootError, match="systemd-creds encrypt failed") as err:
        tpm_box(tmp_path / "a", f"swtpm:host=127.0.0.1,port={port_pair()}")
    assert "\n" not in str(err.value) and "tpm2_device" in str(err.value)
    state = tmp_path / "a" / "state"
    assert not is_provisioned(state)
    assert not (state / "vault.key").exists() and not (state / "vault.json").exists()
    assert not (tmp_path / "a" / "system").exists()  # no drop-in


@needs_swtpm
def test_the_gateway_opens_the_vault_from_its_credential(
    tmp_path: Path, start_swtpm: Callable[[str], SoftTpm], monkeypatch: pytest.MonkeyPatch
) -> None:
    tpm = start_swtpm("a")
    cfg = tpm_box(tmp_path / "a", tpm.tcti)
    # Without the unit's credential (and no key file) the vault does not open.
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(VaultError):
        open_vault(cfg)
    kek = unit_start(cfg, tpm.tcti, tmp_path / "creds")
    assert len(kek.read_bytes()) == 32
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(kek.parent))
    vault = open_vault(cfg)
    assert vault.kek_kind == "credential"
    vault.put("provider/up", SECRET)
    vault.seal()
    assert open_vault(cfg).get("provider/up") == SECRET
    # An admin command outside the unit unseals the credential store's copy itself.
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert read_secrets(cfg) == {"provider/up": SECRET}


@needs_swtpm
def test_another_tpm_cannot_unseal_the_kek(
    tmp_path: Path, start_swtpm: Callable[[str], SoftTpm]
) -> None:
    tpm, other = start_swtpm("a"), start_swtpm("b")
    cfg = tpm_box(tmp_path / "a", tpm.tcti)
    cred = str(credential_store(cfg))
    same = creds(tpm.tcti, "decrypt", f"--name={CREDENTIAL}", cred, "-")
    assert same.returncode == 0 and len(same.stdout) == 32
    done = creds(other.tcti, "decrypt", f"--name={CREDENTIAL}", cred, "-")
    assert done.returncode != 0 and done.stdout == b""
    assert b"integrity check failed" in done.stderr  # refused by the TPM, for the right reason
    # The box pointed at the other TPM: its admin commands fail with one line.
    moved = parse_config(
        {"state": {"dir": str(cfg.state_dir)}, "vault": {"kek": "auto", "tpm2_device": other.tcti}}
    )
    with pytest.raises(VaultError, match=r"systemd-creds decrypt .* failed") as err:
        read_secrets(moved)
    assert "\n" not in str(err.value) and "integrity check failed" in str(err.value)


# --- backup, restore, factory reset -------------------------------------------------------------


@needs_swtpm
def test_a_tpm_box_backup_restores_onto_key_file_and_tpm_boxes(
    tmp_path: Path, start_swtpm: Callable[[str], SoftTpm]
) -> None:
    a = tpm_box(tmp_path / "a", start_swtpm("a").tcti)
    expected = {"provider/up": SECRET, "webhook/alerts": "https://hooks.example/secret-token"}
    with kek_for(a, "credential") as kek:
        vault = Vault.open(a.vault_path, kek)
        for sid, value in expected.items():
            vault.put(sid, value)
        vault.seal()
    archive = tmp_path / "a.aigw-backup"
    contents = create_backup(a, archive, PASSPHRASE, scrypt_n=FAST)
    assert contents.vault_kind == "secrets" and dict(contents.secrets) == expected
    # Onto a key-file box: its own key file wraps the secrets.
    b = make_box(tmp_path / "b", populate=False)
    b_key = b.cfg.vault_key_file.read_bytes()
    restore_backup(b.cfg, archive, PASSPHRASE)
    assert b.cfg.vault_key_file.read_bytes() == b_key
    assert read_secrets(b.cfg) == expected
    # Onto another TPM box: its own TPM's credential wraps them, A's TPM plays no part.
    c_tpm = start_swtpm("c")
    c = tpm_box(tmp_path / "c", c_tpm.tcti)
    c_sealed = credential_store(c).read_bytes()
    result = restore_backup(c, archive, PASSPHRASE)
    assert "credential" in result.vault
    assert credential_store(c).read_bytes() == c_sealed
    assert recorded_kind(c.vault_path) == "credential"
    c_tpm.reboot()  # the box restarts its gateway after a restore
    assert read_secrets(c) == expected


@needs_swtpm
def test_factory_reset_drops_the_sealed_key_and_first_boot_seals_a_new_one(
    tmp_path: Path, start_swtpm: Callable[[str], SoftTpm], monkeypatch: pytest.MonkeyPatch
) -> None:
    tpm = start_swtpm("a")
    cfg = tpm_box(tmp_path / "a", tpm.tcti)
    sys_paths = system_paths(tmp_path / "a")
    cred = credential_store(cfg)
    old_sealed = cred.read_bytes()
    old_kek = unit_start(cfg, tpm.tcti, tmp_path / "creds")
    ident = load_identity(cfg.state_dir)
    assert ident is not None
    result = factory_reset(cfg, ident.appliance_id, dropin=sys_paths.gateway_dropin)
    assert str(cred) in result.overwritten and str(cred) in result.removed
    assert not cred.exists() and not sys_paths.gateway_dropin.exists() and result.dropin_removed
    # The gateway's ExecStopPost runs first boot with the old unit's $CREDENTIALS_DIRECTORY
    # still set: the new vault must not be wrapped with that old key.
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(old_kek.parent))
    again = provision(cfg, sys_paths)
    assert not again.already and again.kek == "tpm2"
    assert again.identity.appliance_id != ident.appliance_id
    assert cred.is_file() and cred.read_bytes() != old_sealed
    assert sys_paths.gateway_dropin.is_file() and not cfg.vault_key_file.exists()
    # The old key does not open the new vault ...
    with pytest.raises(VaultError):
        open_vault(cfg)
    # ... the new one, as the unit hands it at the gateway's next start, does.
    tpm.reboot()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    fresh = unit_start(cfg, tpm.tcti, tmp_path / "creds2")
    assert fresh.read_bytes() != old_kek.read_bytes()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(fresh.parent))
    assert open_vault(cfg).list() == []
