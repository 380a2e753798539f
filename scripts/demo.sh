#!/usr/bin/env bash
# Builds trustdeck and runs the demo. Until `trustdeck demo` (the console and the nested
# topology) lands, this starts an upstream server and one agent in a temporary directory,
# registers an entry for the invoking user, fetches an SVID as that user would, and keeps
# serving until Ctrl-C. Point any SPIFFE client at the printed socket.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/trustdeck/target}
cargo build --release --bins --locked
bin="$CARGO_TARGET_DIR/release"
dir=$(mktemp -d /tmp/trustdeck-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

cat > "$dir/server.toml" <<TOML
trust_domain = "example.org"
bind_address = "127.0.0.1:0"
data_dir = "$dir/server"
ca_ttl = "24h"
default_x509_svid_ttl = "1h"
TOML
"$bin/trustdeck-server" run --config "$dir/server.toml" 2>"$dir/server.log" &
pids+=($!)
for _ in $(seq 100); do [ -f "$dir/server/server.json" ] && break; sleep 0.1; done
addr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_api"])' "$dir/server/server.json")
srv() { "$bin/trustdeck-server" "$@" --config "$dir/server.toml"; }
srv bundle show --format pem > "$dir/bundle.pem"
token=$(srv token generate | awk '/^Token:/{print $2}')
agent_id="spiffe://example.org/trustdeck/agent/join_token/$token"
srv entry create --spiffe-id spiffe://example.org/dev/local/demo/$(id -un) \
  --parent-id "$agent_id" --selector "unix:uid:$(id -u)" >/dev/null

cat > "$dir/agent.toml" <<TOML
trust_domain = "example.org"
server_address = "$addr"
trust_bundle_path = "$dir/bundle.pem"
data_dir = "$dir/agent"
[node_attestation]
type = "join_token"
token = "$token"
TOML
"$bin/trustdeck-agent" run --config "$dir/agent.toml" 2>"$dir/agent.log" &
pids+=($!)
sock="$dir/agent/workload.sock"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
sleep 1

echo "== server"; srv healthcheck
echo "== agents"; srv agent list
echo "== your SVID, fetched over the Workload API"
"$bin/trustdeck-agent" api fetch x509 --socket "$sock"
echo "Serving. Try: SPIFFE_ENDPOINT_SOCKET=unix://$sock $bin/trustdeck-agent api fetch jwt --audience demo"
echo "Logs: $dir/server.log $dir/agent.log. Press Ctrl-C to stop."
wait "${pids[0]}"
