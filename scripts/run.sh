#!/usr/bin/env bash
# Sets up (idempotently), builds the release binary and runs the agent worker against the
# LiveKit server named by LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET (or a config file
# given as MEETING_AGENT_CONFIG). With neither set, it runs the demo (`meeting-agent-dev demo`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
source scripts/versions.env
export MEETING_AGENT_CACHE="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MEETING_AGENT_CACHE/target}"
cargo build --locked --release --workspace
bin="$CARGO_TARGET_DIR/release/meeting-agent"

if [ -z "${LIVEKIT_URL:-}" ] && [ -z "${MEETING_AGENT_CONFIG:-}" ]; then
  # No server named: the demo. A local livekit-server, a participant speaking the fixture
  # sentences with its camera on, and the agent; live captions, then the recording's link,
  # the meeting's chat thread and its summary.
  exec "$bin-dev" demo
fi
exec "$bin" worker "$@"
