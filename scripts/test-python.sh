#!/usr/bin/env bash
# Builds the Python package (`pip install ./python`, via maturin) into the tests' venv
# (target/envs/test/venv) and runs its checks: ruff, mypy --strict on the package and
# examples, stubtest (the installed native module against its stub), pytest against
# the in-process polygear.Server and the C gearmand.
# Works on a fresh Debian machine as root (installs gearmand / python3-venv if missing).
# Env: POLYGEAR_PY_PROFILE (dev|release, default dev), POLYGEAR_ENVS, PYTEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tag=test-python
. scripts/lib.sh

need=()
[ -x /usr/sbin/gearmand ] || need+=(gearman-job-server)
command -v gearman >/dev/null || need+=(gearman-tools)
command -v python3 >/dev/null || need+=(python3 python3-venv python3-pip)
apt_install ${need[@]+"${need[@]}"}
need_cargo

venv=$PG_TEST/venv
pg_venv "$venv"
"$venv/bin/python" -c 'import pytest, pytest_timeout, mypy, ruff' 2>/dev/null ||
  pg_venv "$venv" pytest pytest-timeout mypy ruff

# The Rust CLI is used by the "Python client + Rust worker" test (skipped if it does not build).
cargo build -q -p polygear-cli --bin polygear 2>/dev/null ||
  echo "test-python: warning: could not build the polygear CLI; its interop test will be skipped" >&2

pg_test_python

cd python
echo "test-python: ruff"
"$venv/bin/ruff" check polygear tests examples
"$venv/bin/ruff" format --check polygear tests examples
echo "test-python: mypy --strict"
"$venv/bin/mypy" --strict --no-incremental --cache-dir=/dev/null polygear examples tests
echo "test-python: stubtest polygear._polygear"
# From outside the source tree (a scratch folder, which also takes its .mypy_cache): the
# installed module against the stub installed with it. No allowlist: nothing needs one.
scratch=$(mktemp -d)
(cd "$scratch" && "$venv/bin/python" -m mypy.stubtest polygear._polygear) || { rm -rf "$scratch"; exit 1; }
rm -rf "$scratch"
echo "test-python: pytest"
# the pytest script (not `python -m pytest`) keeps python/ off sys.path, so the
# tests import the installed package, not the source folder
"$venv/bin/pytest" -p no:cacheprovider --timeout=180 -q -rs ${PYTEST_ARGS:-} tests
