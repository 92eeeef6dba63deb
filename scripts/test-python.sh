#!/usr/bin/env bash
# Builds the Python package (`pip install ./python`, via maturin) into a venv
# and runs its checks: ruff, mypy --strict on the package and examples, pytest
# against the in-process polygear.Server and the C gearmand.
# Works on a fresh Debian machine as root (installs gearmand / python3-venv if
# missing). Env: POLYGEAR_VENV (default .venv), POLYGEAR_PY_PROFILE (dev|release,
# default dev), PYTHON (interpreter for the venv, default python3),
# PYTEST_ARGS (extra pytest arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
venv="${POLYGEAR_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
profile="${POLYGEAR_PY_PROFILE:-dev}"

tag=test-python
. scripts/lib.sh

need=()
[ -x /usr/sbin/gearmand ] || need+=(gearman-job-server)
command -v gearman >/dev/null || need+=(gearman-tools)
command -v "$python" >/dev/null || need+=(python3 python3-venv python3-pip)
apt_install ${need[@]+"${need[@]}"}
need_cargo

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" 2>/dev/null || { apt_install python3-venv; rm -rf "$venv"; "$python" -m venv "$venv"; }
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  "maturin>=1.9.4,<2" pytest pytest-timeout mypy ruff
export PATH="$venv/bin:$PATH" # the maturin build backend runs `maturin` from PATH

# The Rust CLI is used by the "Python client + Rust worker" test (skipped if it does not build).
cargo build -q -p polygear-cli --bin polygear 2>/dev/null ||
  echo "test-python: warning: could not build the polygear CLI; its interop test will be skipped" >&2

echo "test-python: building the package (profile $profile)"
MATURIN_PEP517_ARGS="--profile $profile" "$venv/bin/python" -m pip install -q --disable-pip-version-check \
  --no-build-isolation --no-deps --force-reinstall ./python

cd python
echo "test-python: ruff"
"$venv/bin/ruff" check polygear tests examples
"$venv/bin/ruff" format --check polygear tests examples
echo "test-python: mypy --strict"
"$venv/bin/mypy" --strict --no-incremental polygear examples tests
echo "test-python: pytest"
# the pytest script (not `python -m pytest`) keeps python/ off sys.path, so the
# tests import the installed package, not the source folder
"$venv/bin/pytest" -p no:cacheprovider --timeout=180 -q -rs ${PYTEST_ARGS:-} tests
