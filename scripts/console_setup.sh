#!/usr/bin/env bash
# Installs the web console's pinned player (console/package.json: hls.js) with npm, idempotently:
# `npm ci` only when console/node_modules is missing or console/package-lock.json changed. build.rs
# embeds console/node_modules/hls.js/dist/hls.min.js into the binary when it is there.
# npm's cache lives under $MEETING_AGENT_CACHE (default ~/.cache/meeting-agent)/npm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$here/../console"
cache="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}"
log() { printf 'console_setup: %s\n' "$*" >&2; }

# npm from Debian when the machine has none (a fresh machine: the main job's setup runs this).
if ! command -v npm >/dev/null; then
  log "installing Debian package: npm"
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends npm
fi
stamp="$dir/node_modules/.meeting-agent-lock.sha256"
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ ! -d "$dir/node_modules" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "npm ci in console (npm cache: $cache/npm)"
  mkdir -p "$cache/npm"
  (cd "$dir" && npm_config_cache="$cache/npm" npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
