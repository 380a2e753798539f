#!/usr/bin/env bash
# Builds trustdeck and runs `trustdeck demo`: an upstream server, two downstream segments
# (gcp, dmz) with their node agents and workload agents, all on loopback with SQLite, and the
# console on top. Quit the console (q) to stop everything. Arguments are passed to
# `trustdeck demo` (e.g. --no-console --dir /tmp/td to run headless and write demo.json).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/trustdeck/target}
cargo build --release --bins --locked
exec "$CARGO_TARGET_DIR/release/trustdeck" demo "$@"
