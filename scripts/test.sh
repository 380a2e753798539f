#!/usr/bin/env bash
# Runs every trustdeck test on a fresh Debian 12 machine: installs what is missing, builds,
# starts a throwaway PostgreSQL, runs the unit, datastore and end-to-end suites, stops it,
# then runs each fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/trustdeck/target}
export TRUSTDECK_VENV=${TRUSTDECK_VENV:-$HOME/.cache/trustdeck/venv}
. scripts/pg.sh
pg_start
trap pg_stop EXIT
export TRUSTDECK_REQUIRE_POSTGRES=1
cargo build --workspace --bins --tests --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --failure-output final
else
  cargo test --workspace --locked --no-fail-fast
fi
# Every fuzz target for a few seconds (an instrumented build of its own).
./scripts/fuzz.sh 5
