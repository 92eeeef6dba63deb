#!/usr/bin/env bash
# Runs the examples under examples/ end to end (tests/examples/test_examples.py, pytest):
# reverse (every worker language with every client language), thumbnail, mailqueue and
# shell against one polygeard on a free loopback port, plus lint of the Python examples
# (ruff, mypy --strict) and syntax checks of the Node, Ruby and shell ones.
# (examples/wordcount is the demo of scripts/demo.sh.)
#
# Uses the tests' environment (target/envs/test; scripts/lib.sh builds and installs what
# is missing or stale there): polygear in its venv (with pytest, mypy, ruff and Pillow),
# its Node app folder and its GEM_HOME; the polygear and polygeard binaries from cargo.
# Env: POLYGEAR_ENVS, POLYGEAR_BIN (dir with polygeard and polygear; default: cargo
# build into target/debug), PYTEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tag=test-examples
. scripts/lib.sh

if [ -z "${POLYGEAR_BIN:-}" ]; then
  need_cargo
  pg_log "cargo build -p polygear-cli -p polygear-server"
  cargo build -q -p polygear-cli -p polygear-server
  export POLYGEAR_BIN=$CARGO_TARGET_DIR/debug
fi

venv=$PG_TEST/venv
pg_test_python
"$venv/bin/python" -c 'import pytest, pytest_timeout, mypy, ruff, PIL' 2>/dev/null ||
  pg_venv "$venv" pytest pytest-timeout mypy ruff pillow
pg_test_node
export NODE_PATH=$PG_TEST/node/node_modules
pg_test_ruby
pg_gem_env "$PG_TEST/gems"

"$venv/bin/ruff" check --config python/pyproject.toml tests/examples
"$venv/bin/ruff" format --config python/pyproject.toml --check tests/examples
"$venv/bin/mypy" --strict --no-incremental --cache-dir=/dev/null tests/examples
# shellcheck disable=SC2086
"$venv/bin/pytest" -p no:cacheprovider --timeout=180 -q -rs ${PYTEST_ARGS:-} tests/examples
