#!/usr/bin/env bash
# Installs the browser client of the tests (tests/browser): Debian's Chromium and the pinned npm
# packages (livekit-client, puppeteer-core). Idempotent; exits at once when all is in place.
# npm's cache lives under $MEETING_AGENT_CACHE (default ~/.cache/meeting-agent)/npm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$here/../tests/browser"
cache="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}"
log() { printf 'browser_setup: %s\n' "$*" >&2; }

missing=()
dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed" || missing+=(chromium)
# Node.js >= 18 runs the driver (puppeteer-core 24); Debian 12's nodejs is 18.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  log "error: Node.js >= 18 is required (found $(node --version))"; exit 1
fi

# npm ci only when node_modules is missing or package-lock.json changed since the last install.
# The stamp lives inside node_modules, so removing node_modules also forces a reinstall.
stamp="$dir/node_modules/.meeting-agent-lock.sha256"
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ ! -d "$dir/node_modules" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "npm ci in tests/browser (npm cache: $cache/npm)"
  mkdir -p "$cache/npm"
  (cd "$dir" && npm_config_cache="$cache/npm" PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
