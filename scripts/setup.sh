#!/usr/bin/env bash
# Installs what polygear's build, demo and tests need on a fresh Debian machine.
# Idempotent: only missing packages are installed. Run as root (or with sudo).
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in gearman-job-server gearman-tools libgearman-client-perl ruby ruby-dev libclang-dev pkg-config; do
  have_pkg "$pkg" || need+=("$pkg")
done
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
command -v python3 >/dev/null || need+=(python3 python3-venv python3-pip)

if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

command -v cargo >/dev/null || {
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
}
echo "setup: ok ($(gearmand --version 2>/dev/null | grep -m1 gearmand || echo gearmand), $(ruby --version | cut -d' ' -f1-2), node $(node --version), $(python3 --version))"
