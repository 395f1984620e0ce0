#!/usr/bin/env bash
# Host packages the boot test needs (debootstrap, systemd-nspawn, udev for loop devices, ...),
# and the software TPM that tests/provisioning/test_tpm.py seals the vault's key with (swtpm and
# the tss2 libraries systemd-creds loads for --tpm2-device=swtpm:...; names as in Debian 12).
# Run as root before `make test`; installs only what is missing, quietly. Not root, or no apt:
# nothing to do here (the tests that need these packages skip with the reason).
set -euo pipefail

PACKAGES=(debootstrap systemd-container udev e2fsprogs tmux
    swtpm swtpm-tools libtss2-tcti-swtpm0 libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0)

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "host-packages: not root or no apt-get; skipping" >&2
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

export DEBIAN_FRONTEND=noninteractive
# An image without package lists (or lists older than a day) needs an update first.
lists=/var/lib/apt/lists
if [ -z "$(find "$lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n 1)" ]; then
    timeout 300 apt-get update -qq >/dev/null
fi
timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "host-packages: installed ${missing[*]}" >&2
