"""Build a Debian bookworm root filesystem with aigw installed, ready to boot as the box.

Run as root: `python image/rootfs.py BUILD_DIR` (or `python -m image.rootfs BUILD_DIR`).

Three layers, the first two cached under ~/.cache/aigw/ (override: $AIGW_IMAGE_CACHE):
  1. the base rootfs (debootstrap minbase), keyed by the suite and the package list;
  2. the dependency venv at /opt/aigw/venv, keyed by the base and pyproject's dependencies;
  3. per build: a copy of both, the project's wheel, the units, the config, enabled units.
The Debian mirror is the one this host's apt already uses; pip uses this host's index settings.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

SUITE = "bookworm"
# What the box needs to boot systemd and run the venv; nothing for development.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "ca-certificates",
    "iproute2",
    "udev",
    "procps",
    "tzdata",
    # polkit with its JavaScript rules engine (duktape): lets user aigw start and stop the
    # engines (systemd/polkit/50-aigw.rules); libpam-systemd is the logind it depends on,
    # named because debootstrap does not resolve that virtual package by itself.
    "polkitd",
    "libpam-systemd",
)
VENV = "/opt/aigw/venv"
ENABLED_UNITS = ("aigw-firstboot.service", "aigw-gateway.service", "aigw-console.service")
PROJECT = Path(__file__).resolve().parent.parent
# Where the host's CA bundle is put inside the rootfs while pip runs there.
_BUILD_CA = "/mnt/host-ca.pem"
_PIP_CACHE = "/mnt/pip-cache"

# Timeouts (seconds) for each external step: a stuck mirror fails the build, never hangs it.
DEBOOTSTRAP_TIMEOUT = 1200
PIP_TIMEOUT = 900
STEP_TIMEOUT = 300


class BuildError(Exception):
    """A rootfs build step failed; the message says which and why."""


def log(msg: str) -> None:
    """Progress on stderr, with the elapsed time of the build."""
    print(f"[rootfs {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


_T0 = time.monotonic()


def cache_root() -> Path:
    """The cache of base rootfs trees, venvs and downloaded .debs."""
    raw = os.environ.get("AIGW_IMAGE_CACHE")
    return Path(raw) if raw else Path.home() / ".cache" / "aigw"


def _run(
    cmd: Sequence[str], *, timeout: float = STEP_TIMEOUT, env: dict[str, str] | None = None
) -> str:
    """Run one command; on failure raise BuildError with the tail of its output."""
    try:
        proc = subprocess.run(
            list(cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{cmd[0]} timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise BuildError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{tail}")
    return proc.stdout


def _digest(*parts: object) -> str:
    """A short stable key for a cache entry."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --- where packages come from ---------------------------------------------------------------


def apt_mirror(suite: str = SUITE) -> tuple[str, str | None]:
    """The Debian mirror (URI, keyring) apt on this host uses for `suite` main."""
    sources = Path("/etc/apt/sources.list")
    files = [sources] if sources.exists() else []
    src_dir = Path("/etc/apt/sources.list.d")
    if src_dir.is_dir():
        files += sorted(src_dir.glob("*.list")) + sorted(src_dir.glob("*.sources"))
    for path in files:
        text = path.read_text(errors="replace")
        found = _from_deb822(text, suite) if path.suffix == ".sources" else _from_list(text, suite)
        if found:
            return found
    raise BuildError(f"no apt source for Debian {suite} main in /etc/apt; add one to build")


def _from_list(text: str, suite: str) -> tuple[str, str | None] | None:
    """A one-line-style `deb [opts] URI SUITE COMPONENTS` entry for suite main."""
    for line in text.splitlines():
        m = re.match(r"\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
        if m and m.group(3) == suite and "main" in m.group(4).split():
            keyring = re.search(r"signed-by=(\S+?)[\s\]]", m.group(1) or "")
            return m.group(2), keyring.group(1) if keyring else None
    return None


def _from_deb822(text: str, suite: str) -> tuple[str, str | None] | None:
    """A deb822 stanza (Types/URIs/Suites/Components) for suite main."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if (
            "deb" in fields.get("types", "").split()
            and suite in fields.get("suites", "").split()
            and "main" in fields.get("components", "").split()
            and fields.get("enabled", "yes").lower() != "no"
        ):
            return fields["uris"].split()[0], fields.get("signed-by") or None
    return None


def pip_index_settings() -> dict[str, str]:
    """This host's pip index settings (index-url, extra-index-url) as PIP_* variables."""
    out: dict[str, str] = {}
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in ("index-url", "extra-index-url"):
            out["PIP_" + name.upper().replace("-", "_")] = value.strip().strip("'\"")
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        if os.environ.get(name):
            out[name] = os.environ[name]
    return out


def host_ca_bundle() -> Path:
    """The CA bundle this host's pip trusts (a TLS-inspecting proxy's CA may be in it)."""
    for raw in (os.environ.get("PIP_CERT"), os.environ.get("REQUESTS_CA_BUNDLE")):
        if raw and Path(raw).is_file():
            return Path(raw)
    pip_conf = configparser.ConfigParser()
    pip_conf.read(["/etc/pip.conf", "/etc/xdg/pip/pip.conf"])
    if pip_conf.has_option("global", "cert"):
        return Path(pip_conf.get("global", "cert"))
    return Path("/etc/ssl/certs/ca-certificates.crt")


# --- running commands inside a tree ---------------------------------------------------------


def nspawn(
    root: Path,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    binds: Sequence[tuple[Path, str, bool]] = (),
    network: bool = False,
    read_only: bool = False,
    timeout: float = STEP_TIMEOUT,
) -> str:
    """Run one command in `root` under systemd-nspawn (not booted); binds: (host, dest, ro)."""
    cmd = [
        "systemd-nspawn",
        "--quiet",
        "--keep-unit",  # the host has no systemd to make a scope for us
        "--register=no",
        "--console=pipe",
        "--timezone=off",
        "-D",
        str(root),
    ]
    if not network:
        cmd.append("--private-network")
    else:
        cmd.append("--resolv-conf=replace-host")
    if read_only:
        # Bind targets live under tmpfs mounts, so nothing is created in the tree itself.
        cmd += ["--read-only", "--tmpfs=/tmp", "--tmpfs=/root", "--tmpfs=/mnt", "--tmpfs=/opt"]
    for host, dest, ro in binds:
        cmd.append(f"--bind{'-ro' if ro else ''}={host}:{dest}")
    for key, value in (env or {}).items():
        cmd.append(f"--setenv={key}={value}")
    return _run([*cmd, "--", *argv], timeout=timeout)


# --- layer 1: the base rootfs ---------------------------------------------------------------


def ensure_base(cache: Path) -> Path:
    """The cached debootstrap tree for SUITE + PACKAGES, built when missing."""
    path = cache / f"rootfs-{SUITE}-{_digest(SUITE, sorted(PACKAGES))}"
    if (path / ".complete").exists():
        return path
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed (scripts/host-packages.sh installs it)")
    mirror, keyring = apt_mirror()
    work = path.with_name(path.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        f"--cache-dir={debs}",
    ]
    if keyring:
        cmd.append(f"--keyring={keyring}")
    log(f"debootstrap {SUITE} from {mirror} into {work}")
    _run([*cmd, SUITE, str(work), mirror], timeout=DEBOOTSTRAP_TIMEOUT)
    # apt's package lists are not part of the image; a vendor image runs no apt.
    shutil.rmtree(work / "var/lib/apt/lists", ignore_errors=True)
    (work / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (work / ".complete").write_text(f"{SUITE} {' '.join(PACKAGES)}\n")
    shutil.rmtree(path, ignore_errors=True)
    work.rename(path)
    log(f"base rootfs cached at {path}")
    return path


# --- layer 2: the dependency venv -----------------------------------------------------------


def project_dependencies(project: Path = PROJECT) -> list[str]:
    """The runtime dependencies from pyproject.toml (no dev extras, no vLLM)."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    return list(meta["project"]["dependencies"])


def ensure_venv(cache: Path, base: Path, project: Path = PROJECT) -> Path:
    """A cached layer holding only opt/aigw/venv with the dependencies, built when missing."""
    deps = project_dependencies(project)
    path = cache / f"venvlayer-{_digest(base.name, sorted(deps))}"
    if (path / ".complete").exists():
        return path
    layer = path.with_name(path.name + ".tmp")
    shutil.rmtree(layer, ignore_errors=True)
    work = layer / VENV.lstrip("/")
    work.mkdir(parents=True)
    pipcache = cache / "pip"
    pipcache.mkdir(parents=True, exist_ok=True)
    reqs = work / ".requirements.txt"
    reqs.write_text("\n".join(deps) + "\n")
    env = {
        **pip_index_settings(),
        # Inside, only the host's CA bundle lets pip through; the host's own CA path and
        # find-links directory do not exist there.
        "PIP_CERT": _BUILD_CA,
        "REQUESTS_CA_BUNDLE": "",
        "PIP_FIND_LINKS": "",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_DEFAULT_TIMEOUT": "60",
        "PIP_CACHE_DIR": _PIP_CACHE,
    }
    binds: list[tuple[Path, str, bool]] = [
        (host_ca_bundle(), _BUILD_CA, True),
        (work, VENV, False),
        (pipcache, _PIP_CACHE, False),
    ]
    # A file:// index of the host is bound in read-only (its parent, where its files lie).
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        urls = []
        for url in env.get(name, "").split():
            local = Path(url.removeprefix("file://"))
            if url.startswith("file://"):
                if not local.is_dir():
                    continue
                inside = f"/mnt/index-{len(binds)}"
                binds.append((local.parent, inside, True))
                url = f"file://{inside}/{local.name}"
            urls.append(url)
        if name in env:
            env[name] = " ".join(urls)
    log(f"venv {VENV} with {len(deps)} dependencies")
    script = (
        f"set -e; python3 -m venv {VENV}; "
        f"{VENV}/bin/pip install --quiet --upgrade pip; "
        f"{VENV}/bin/pip install --quiet -r {VENV}/.requirements.txt"
    )
    # The base stays read-only: the venv lands in the bound cache directory.
    nspawn(
        base,
        ["/bin/sh", "-c", script],
        env=env,
        binds=binds,
        network=True,
        read_only=True,
        timeout=PIP_TIMEOUT,
    )
    reqs.unlink()
    (layer / ".complete").write_text("\n".join(deps) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    layer.rename(path)
    log(f"venv cached at {path}")
    return path


# --- layer 3: this build --------------------------------------------------------------------


def build_wheel(out: Path, project: Path = PROJECT, compile_for: str | None = None) -> Path:
    """The project's wheel, built from a clean copy of its sources (no build/ in the tree).

    setup.py compiles the masking engine with mypyc for the Python that builds the wheel; that
    wheel only installs into the same Python version. `compile_for` is the box's Python
    ("3.11"): when this host runs another version, the wheel is built pure-Python.
    """
    with tempfile.TemporaryDirectory(prefix="aigw-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "setup.py", "README.md"):
            shutil.copy2(project / name, src / name)
        meta = tomllib.loads((project / "pyproject.toml").read_text())
        include = meta["tool"]["setuptools"]["packages"]["find"]["include"]
        for pkg in sorted({p.rstrip("*") for p in include}):
            if (project / pkg).is_dir():
                shutil.copytree(
                    project / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__")
                )
        env = {k: v for k, v in os.environ.items() if k != "PIP_REQUIRE_VIRTUALENV"}
        host = f"{sys.version_info.major}.{sys.version_info.minor}"
        if compile_for is not None and compile_for != host:
            log(f"this host runs Python {host}, the box {compile_for}: a pure-Python wheel")
            env["AIGW_NO_COMPILE"] = "1"
        _run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
            env=env,
        )
    wheels = sorted(out.glob("aigw-*.whl"))
    if not wheels:
        raise BuildError("pip wheel made no aigw wheel")
    return wheels[-1]


def rootfs_python(root: Path) -> str | None:
    """The version ("3.11") of the rootfs's python3, from its /usr/bin/python3 link."""
    link = root / "usr/bin/python3"
    if not link.is_symlink():
        return None
    m = re.fullmatch(r"python(\d+\.\d+)", os.readlink(link))
    return m.group(1) if m else None


def _copy_tree(src: Path, dest: Path) -> None:
    """cp -a (devices, owners, hard links kept; reflinks where the filesystem has them)."""
    dest.mkdir(parents=True, exist_ok=True)
    _run(["cp", "-a", "--reflink=auto", f"{src}/.", str(dest)], timeout=600)


def install_units(root: Path, sysd: Path = PROJECT / "systemd") -> None:
    """The units, udev rules, sysusers/tmpfiles snippets, polkit rules and the box config from
    `sysd`."""
    unit_dir = root / "usr/lib/systemd/system"
    for unit in sorted(sysd.glob("*.service")) + sorted(sysd.glob("*.target")):
        shutil.copy2(unit, unit_dir / unit.name)
    for sub, dest in (
        ("sysusers.d", "usr/lib/sysusers.d"),
        ("tmpfiles.d", "usr/lib/tmpfiles.d"),
        ("udev", "usr/lib/udev/rules.d"),
        ("polkit", "usr/share/polkit-1/rules.d"),
    ):
        for f in sorted((sysd / sub).glob("*")) if (sysd / sub).is_dir() else []:
            (root / dest).mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, root / dest / f.name)
    for rule in sorted(sysd.glob("*.rules")):
        shutil.copy2(rule, root / "usr/lib/udev/rules.d" / rule.name)
    if (sysd / "aigw.toml").exists():
        (root / "etc/aigw").mkdir(parents=True, exist_ok=True)
        shutil.copy2(sysd / "aigw.toml", root / "etc/aigw/aigw.toml")
    missing = [u for u in ENABLED_UNITS if not (unit_dir / u).exists()]
    if missing:
        raise BuildError(f"systemd/ lacks {', '.join(missing)}")
    _run(["systemctl", f"--root={root}", "enable", "--quiet", *ENABLED_UNITS])


def _install_project(root: Path, project: Path, units: Path | None) -> None:
    """This checkout's wheel, units and config, on top of the base and the venv."""
    with tempfile.TemporaryDirectory(prefix="aigw-wheel-") as tmp:
        wheel = build_wheel(Path(tmp), project, rootfs_python(root) or "unknown")
        log(f"installing {wheel.name}")
        nspawn(
            root,
            [f"{VENV}/bin/pip", "install", "-q", "--no-deps", "--no-index", f"/mnt/{wheel.name}"],
            binds=[(Path(tmp), "/mnt", True)],
            env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    install_units(root, units or project / "systemd")
    (root / ".complete").unlink(missing_ok=True)
    # Each box makes its own machine id on its first boot; the image ships none.
    (root / "etc/machine-id").unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/hostname").write_text("aigw\n")
    # debootstrap copied this host's resolver; the box learns its own (DHCP, seed media).
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("")


def _layers(project: Path, cache: Path | None) -> tuple[Path, Path]:
    """The cached base and venv layers, built when missing."""
    if os.geteuid() != 0:
        raise BuildError("building the rootfs needs root (debootstrap, nspawn, device nodes)")
    cache = cache or cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    base = ensure_base(cache)
    return base, ensure_venv(cache, base, project)


def build(
    dest: Path, project: Path = PROJECT, cache: Path | None = None, units: Path | None = None
) -> Path:
    """Assemble a standalone bootable rootfs with aigw installed at `dest` (missing or empty)."""
    if dest.exists() and any(dest.iterdir()):
        raise BuildError(f"{dest} is not empty")
    base, venv = _layers(project, cache)
    log(f"copying the base and the venv into {dest}")
    _copy_tree(base, dest)
    _copy_tree(venv, dest)
    _install_project(dest, project, units)
    log(f"rootfs ready at {dest}")
    return dest


def mount_overlay(
    work: Path, project: Path = PROJECT, cache: Path | None = None, units: Path | None = None
) -> Path:
    """Like build(), but as an overlayfs on the cached layers (seconds, a few MB): work/root.

    Everything the box writes lands in work/upper; call unmount_overlay(root) when done, and
    never rebuild the cache while it is mounted.
    """
    base, venv = _layers(project, cache)
    root, upper, scratch = work / "root", work / "upper", work / "ovl-work"
    for d in (root, upper, scratch):
        d.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={venv}:{base},upperdir={upper},workdir={scratch}"
    _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(root)])
    try:
        _install_project(root, project, units)
    except BaseException:
        unmount_overlay(root)
        raise
    log(f"rootfs ready at {root} (overlay)")
    return root


def unmount_overlay(root: Path) -> None:
    """Unmount what mount_overlay() mounted (lazily if something still holds it)."""
    if subprocess.run(["umount", str(root)], capture_output=True, timeout=60).returncode != 0:
        subprocess.run(["umount", "--lazy", str(root)], capture_output=True, timeout=60)


def main(argv: Sequence[str] | None = None) -> int:
    """`python image/rootfs.py BUILD_DIR`: build the rootfs; errors are one line."""
    parser = argparse.ArgumentParser(description="Build the aigw Debian rootfs (as root).")
    parser.add_argument("build_dir", type=Path, help="where to assemble the rootfs")
    parser.add_argument("--cache", type=Path, default=None, help="cache dir (~/.cache/aigw)")
    args = parser.parse_args(argv)
    try:
        build(args.build_dir.resolve(), cache=args.cache)
    except BuildError as exc:
        print(f"rootfs: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
