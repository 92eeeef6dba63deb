#!/usr/bin/env bash
# Installs what polygear's build, demo and tests need on a fresh Debian machine.
# Idempotent: only missing packages are installed. Run as root (or with sudo).
set -euo pipefail
tag=setup
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need=()
# The queue backends' tests start their own PostgreSQL, MariaDB, Redis and memcached;
# the dashboard's browser test (scripts/test-dashboard.sh) drives Debian's headless chromium.
for pkg in gearman-job-server gearman-tools libgearman-client-perl ruby ruby-dev libclang-dev pkg-config iproute2 \
    postgresql mariadb-server redis-server memcached chromium; do
  have_pkg "$pkg" || need+=("$pkg")
done
# The TLS and HTTP tests drive `openssl s_client` and curl.
for pkg in openssl curl; do
  have_pkg "$pkg" || need+=("$pkg")
done
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
command -v python3 >/dev/null || need+=(python3 python3-venv python3-pip)

apt_install ${need[@]+"${need[@]}"}
need_cargo
echo "setup: ok ($(gearmand --version 2>/dev/null | grep -m1 gearmand || echo gearmand), $(ruby --version | cut -d' ' -f1-2), node $(node --version), $(python3 --version))"
