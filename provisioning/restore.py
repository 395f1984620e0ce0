"""Restoring a backup: check everything first, stage it beside the state, then swap it in.

1. The gateway must be stopped (its admin socket must not answer).
2. The archive is decrypted into `<state>/.restore-XXXX/` (same filesystem, 0700) and checked
   whole: passphrase, every segment's tag, every file's SHA-256, `PRAGMA integrity_check`, a
   schema not newer than this software's. Any failure removes the staging directory: nothing
   else was touched.
3. The vault is rebuilt in staging under THIS box's KEK (its key file or sealed credential; a
   passphrase vault needs `vault_passphrase`) and read back.
4. `plan.json` lists the moves (staged file -> its place) and is fsynced; then each file is
   renamed into place. A restore interrupted here is finished by `finish_interrupted_restore`
   (run again by the next restore), so a half-restored state is never left for good.

The identity (appliance id, device key, TLS certificate) belongs to the box: it is restored only
when the archive was made by this same box, or with `take_identity` (a replacement for a dead
box, so that clients which pinned its certificate keep working). Otherwise this box keeps its
own; two live boxes with one identity would confuse mDNS and certificate pinning.
An older schema is migrated when the gateway next starts; the model store's weights are not in
a backup: models whose manifest this box lacks are listed, and their manifests are kept in
`<state>/restored/` with the backup's configuration file, for the admin to re-import.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.files import fsync_dir as _fsync_dir
from appliance.identity import IDENTITY_FILE, IdentityError, load_identity
from appliance.vault import KeyFileKek, PassphraseKek, Vault, VaultError
from provisioning.backup import DEVICE_KEY, DEVICE_PUB, Contents, unpack
from provisioning.backup_archive import BackupError
from provisioning.box_vault import kek_for, target_kind
from provisioning.offline import refuse_while_running

STAGING_PREFIX = ".restore-"
PLAN = "plan.json"
RESTORED_DIR = "restored"
FIRST_TOKEN = "first-admin-token"
# Staged files are all 0600; these are public and get the mode first boot gives them.
PUBLIC_FILES = (IDENTITY_FILE, DEVICE_PUB, "tls/cert.pem")


@dataclass
class RestoreResult:
    """What a restore did."""

    summary: dict[str, Any]
    identity: str  # "restored" or "kept"
    vault: str
    installed: list[str] = field(default_factory=list)
    missing_models: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """For --json (no secret values)."""
        return {
            "restored_from": self.summary,
            "identity": self.identity,
            "vault": self.vault,
            "installed": self.installed,
            "missing_models": self.missing_models,
        }


def _owner(cfg: Config) -> tuple[int, int] | None:
    """The state directory's owner, for restored files when root runs the restore."""
    if os.geteuid() != 0:
        return None
    st = cfg.state_dir.stat()
    return st.st_uid, st.st_gid


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(root)


def _same_box(cfg: Config, contents: Contents) -> bool:
    try:
        ident = load_identity(cfg.state_dir)
    except IdentityError:
        return False
    return ident is not None and ident.appliance_id == contents.header.appliance_id


def _rebuild_vault(
    cfg: Config, contents: Contents, stage: Path, vault_passphrase: str | None
) -> tuple[list[tuple[str, str]], str]:
    """Write the vault for this box into `stage`; returns extra moves and what was done."""
    if contents.vault_kind is None:
        return [], "none in the backup (this box's vault is kept)"
    secrets = contents.secrets
    kind = target_kind(cfg)
    staged_file = contents.root / "vault.json"
    if contents.vault_kind == "file":
        if kind == "passphrase":
            return [("vault.json", str(cfg.vault_path))], "restored as is (passphrase vault)"
        if vault_passphrase is None:
            raise BackupError(
                "the backup's vault is locked by a passphrase and this box's vault is not: "
                "give that passphrase (--vault-passphrase-file) to re-wrap it; nothing was changed"
            )
        old = Vault.open(staged_file, PassphraseKek())
        old.unseal(vault_passphrase)
        secrets = [(i.id, old.get(i.id) or "") for i in sorted(old.list(), key=lambda i: i.version)]
        old.seal()
        staged_file.unlink()
    rebuilt = stage / "vault.new.json"
    moves = [("vault.new.json", str(cfg.vault_path))]
    if kind == "passphrase":
        if vault_passphrase is None:
            raise BackupError(
                "this box's vault is locked by a passphrase: give it (--vault-passphrase-file) "
                "to re-wrap the backup's secrets under it; nothing was changed"
            )
        vault = Vault.create(rebuilt, passphrase=vault_passphrase)
        _fill(vault, secrets)
        return moves, f"{len(secrets)} secrets re-wrapped under this box's passphrase"
    key_file = None
    if kind == "keyfile" and not cfg.vault_key_file.exists():
        key_file = stage / "vault.key"  # made here, installed with the vault
        moves.insert(0, ("vault.key", str(cfg.vault_key_file)))
    with kek_for(cfg, kind, key_file) as kek:
        vault = Vault.open(rebuilt, kek)
        _fill(vault, secrets)
        # Read back through a fresh open: the staged vault opens with what the box will use.
        check = Vault.open(rebuilt, kek)
    if any(check.get(sid) != value for sid, value in secrets):
        raise BackupError("the re-wrapped vault does not read back; nothing was changed")
    check.seal()
    where = "a new key file" if isinstance(kek, KeyFileKek) and key_file else f"this box's {kind}"
    return moves, f"{len(secrets)} secrets re-wrapped under {where}"


def _fill(vault: Vault, secrets: list[tuple[str, str]]) -> None:
    for sid, value in secrets:
        vault.put(sid, value)
    vault.seal()


def _plan(cfg: Config, contents: Contents, take_identity: bool) -> list[tuple[str, str]]:
    """(staged name, destination) for the database, identity and TLS."""
    state = cfg.state_dir
    moves = [("aigw.db", str(cfg.database_path))]
    if take_identity:
        places = {
            IDENTITY_FILE: state / IDENTITY_FILE,
            DEVICE_KEY: state / DEVICE_KEY,
            DEVICE_PUB: state / DEVICE_PUB,
            "tls/cert.pem": cfg.tls_cert_file,
            "tls/key.pem": cfg.tls_key_file,
        }
        for entry in contents.files:
            if entry.name in places:
                moves.append((entry.name, str(places[entry.name])))
    return moves


def _keep_for_admin(cfg: Config, contents: Contents) -> list[str]:
    """Put the config and the manifests of models this box lacks in `<state>/restored/`."""
    out = cfg.state_dir / RESTORED_DIR
    shutil.rmtree(out, ignore_errors=True)
    missing = []
    for entry in contents.entry("model-manifest"):
        model = entry.name.split("/")[1]
        here = cfg.models_dir / model / "manifest.json"
        staged = contents.root / entry.name
        if here.is_file() and here.read_bytes() == staged.read_bytes():
            continue
        missing.append(model)
        (out / "models" / model).mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(staged, out / "models" / model / "manifest.json")
    for entry in contents.entry("config"):
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(contents.root / entry.name, out / "aigw.toml")
    return missing


def _install(stage: Path, name: str, dest: Path, owner: tuple[int, int] | None) -> bool:
    """Move one staged file into place (rename; copy then rename across filesystems)."""
    src = stage / name
    if not src.exists():
        return False  # moved by an earlier, interrupted run
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    if owner is not None:
        os.chown(src, *owner)
    if name in PUBLIC_FILES:
        os.chmod(src, 0o644)
    if name == "aigw.db":
        # The old database's WAL must never be replayed onto the new file.
        for suffix in ("-wal", "-shm", "-journal"):
            dest.with_name(dest.name + suffix).unlink(missing_ok=True)
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: another filesystem
            raise
        tmp = dest.with_name(f".{dest.name}.restore.tmp")
        shutil.copy2(src, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
        src.unlink()
    _fsync_dir(dest.parent)
    return True


def _run_plan(stage: Path, owner: tuple[int, int] | None) -> list[str]:
    plan = json.loads((stage / PLAN).read_text())
    done = []
    for name, dest in plan["moves"]:
        if _install(stage, name, Path(dest), owner):
            done.append(dest)
    for path in plan.get("remove", []):
        Path(path).unlink(missing_ok=True)
    shutil.rmtree(stage)
    return done


def finish_interrupted_restore(cfg: Config) -> list[str]:
    """Finish a restore stopped after its plan was written; drop staging left before that."""
    done: list[str] = []
    if not cfg.state_dir.is_dir():
        return done
    for stage in sorted(cfg.state_dir.glob(STAGING_PREFIX + "*")):
        if (stage / PLAN).is_file():
            done += _run_plan(stage, _owner(cfg))
        else:
            shutil.rmtree(stage, ignore_errors=True)
    return done


def stage_restore(
    cfg: Config,
    archive: Path,
    passphrase: str,
    *,
    take_identity: bool = False,
    vault_passphrase: str | None = None,
) -> tuple[Path, RestoreResult]:
    """Check `archive` whole and stage it with its move plan; nothing in place changes yet.

    The plan is carried out by `finish_interrupted_restore`: at once by `restore_backup`, or
    when the gateway next starts (a restore asked for through the admin API while it runs).
    """
    cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    stage = cfg.state_dir / f"{STAGING_PREFIX}{os.urandom(4).hex()}"
    stage.mkdir(mode=0o700)
    try:
        contents = unpack(archive, passphrase, stage)
        take = take_identity or _same_box(cfg, contents)
        try:
            vault_moves, vault_note = _rebuild_vault(cfg, contents, stage, vault_passphrase)
        except VaultError as exc:
            raise BackupError(f"the vault cannot be restored: {exc}; nothing was changed") from None
        moves = vault_moves + _plan(cfg, contents, take)
        # The first admin token belonged to the database being replaced.
        plan = {"moves": moves, "remove": [str(cfg.state_dir / FIRST_TOKEN)]}
        missing = _keep_for_admin(cfg, contents)
        (stage / PLAN).write_text(json.dumps(plan))
        _fsync_tree(stage)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    result = RestoreResult(
        contents.summary(), "restored" if take else "kept", vault_note, [], missing
    )
    return stage, result


def drop_staged(cfg: Config, keep: Path | None = None) -> None:
    """Remove staged restores other than `keep` (superseded ones, never begun)."""
    for stage in sorted(cfg.state_dir.glob(STAGING_PREFIX + "*")):
        if stage != keep:
            shutil.rmtree(stage, ignore_errors=True)


def restore_backup(
    cfg: Config,
    archive: Path,
    passphrase: str,
    *,
    take_identity: bool = False,
    vault_passphrase: str | None = None,
) -> RestoreResult:
    """Restore `archive` onto this box; nothing changes unless all of it checks out."""
    refuse_while_running(cfg)
    cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    finish_interrupted_restore(cfg)
    stage, result = stage_restore(
        cfg, archive, passphrase, take_identity=take_identity, vault_passphrase=vault_passphrase
    )
    try:
        refuse_while_running(cfg)  # once more, right before anything is replaced
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    result.installed = _run_plan(stage, _owner(cfg))
    return result
