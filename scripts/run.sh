#!/usr/bin/env bash
# Sets up (idempotently), builds the release binary and runs the agent worker against the
# LiveKit server named by LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET (or a config file
# given as MEETING_AGENT_CONFIG). With no LIVEKIT_URL set, it starts a local livekit-server on
# loopback first (development mode) and prints how to join it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
source scripts/versions.env
export MEETING_AGENT_CACHE="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MEETING_AGENT_CACHE/target}"
cargo build --locked --release
bin="$CARGO_TARGET_DIR/release/meeting-agent"

if [ -z "${LIVEKIT_URL:-}" ] && [ -z "${MEETING_AGENT_CONFIG:-}" ]; then
  dir="$(mktemp -d)"
  cat > "$dir/livekit.yaml" <<YAML
port: 7880
bind_addresses: ["127.0.0.1"]
rtc: {tcp_port: 0, udp_port: 7882, use_external_ip: false, node_ip: 127.0.0.1, enable_loopback_candidate: true}
keys: {devkey: meeting-agent-dev-secret-0123456789abcdef}
YAML
  "$MEETING_AGENT_CACHE/tools/livekit-server-$LIVEKIT_SERVER_VERSION/server" --config "$dir/livekit.yaml" > "$dir/server.log" 2>&1 &
  server_pid=$!
  trap 'kill $server_pid 2>/dev/null || true' EXIT
  export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=meeting-agent-dev-secret-0123456789abcdef
  echo "local livekit-server on $LIVEKIT_URL (log: $dir/server.log); join a room with e.g." >&2
  echo "  $MEETING_AGENT_CACHE/venv/bin/python tests/participants/publisher.py --room demo --identity alice" >&2
  sleep 1
fi
exec "$bin" worker "$@"
