#!/usr/bin/env bash
# Builds trustdeck and runs the demo. (Until `trustdeck demo` lands this starts an upstream
# server in a temporary directory, prints its bundle and a join token, and serves until Ctrl-C.)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/trustdeck/target}
cargo build --release --bins --locked
bin="$CARGO_TARGET_DIR/release"
dir=$(mktemp -d /tmp/trustdeck-demo.XXXXXX)
cat > "$dir/server.toml" <<TOML
trust_domain = "example.org"
bind_address = "127.0.0.1:0"
data_dir = "$dir/server"
ca_ttl = "24h"
default_x509_svid_ttl = "1h"
TOML
"$bin/trustdeck-server" run --config "$dir/server.toml" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do [ -f "$dir/server/server.json" ] && break; sleep 0.1; done
cat "$dir/server/server.json"; echo
"$bin/trustdeck-server" healthcheck --config "$dir/server.toml"
"$bin/trustdeck-server" bundle show --format spiffe --config "$dir/server.toml"
"$bin/trustdeck-server" token generate --config "$dir/server.toml"
echo "Serving; press Ctrl-C to stop. Admin: $bin/trustdeck-server <cmd> --config $dir/server.toml"
wait $pid
