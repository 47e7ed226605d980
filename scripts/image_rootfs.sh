#!/usr/bin/env bash
# The production image's runtime stage (Dockerfile, from `FROM debian:bookworm-slim` on) as a
# root filesystem, built without a Docker engine: mmdebstrap makes the Debian bookworm base from
# Debian's packages, and this script carries out the stage's instructions itself. It reads the
# Dockerfile rather than a copy of it, so the two cannot drift: the stage's RUN lines run as
# they are (inside the root filesystem, reading deploy/image/runtime-packages.txt as the image
# build does), its COPY --from=build lines copy this machine's equivalents of the build stage's
# paths, and its ENV, USER, ENTRYPOINT and CMD are printed for whoever runs the agent inside
# (tests/e2e/image_rootfs.rs). An instruction this script does not know stops it, loudly,
# instead of being skipped.
#   scripts/image_rootfs.sh --prepare   # the base (packages, user): built once, cached
#   scripts/image_rootfs.sh BINARY      # the base, then the image's files with BINARY as
#                                       # /usr/bin/meeting-agent; prints, one a line:
#     rootfs PATH | env NAME=VALUE | user NAME UID:GID HOME | entrypoint ARG | cmd ARG
# The root filesystem lives in $MEETING_AGENT_CACHE/image-rootfs/<hash>/, the hash of this
# script, the stage's instructions and the files its base copies from the repository (the
# package list): any change to them builds a new one. The image's files are put in again on each
# call (hard links into the cache where they can be). Needs root (mmdebstrap's root mode, chroot).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}"
dockerfile="$repo/Dockerfile"
log() { printf 'image_rootfs: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
  --prepare) binary="" ;;
  "" | -*) die "usage: $0 --prepare | $0 BINARY" ;;
  *) binary="$(realpath "$1")"; [ -x "$binary" ] || die "$1 is not an executable" ;;
esac
[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap's root mode, chroot)"

# --- The Dockerfile's runtime stage, one instruction a line ------------------------------------
# Comment lines dropped (also between continued lines), continued lines joined as Docker joins
# them (the backslash and the line break removed), then everything from the last FROM on.
mapfile -t all < <(awk '
  /^[[:space:]]*#/ { next }
  { line = line $0 }
  /\\$/ { sub(/\\$/, "", line); next }
  { if (line ~ /[^[:space:]]/) print line; line = "" }
' "$dockerfile")
first=-1
for i in "${!all[@]}"; do [[ "${all[$i]}" =~ ^FROM[[:space:]] ]] && first=$i; done
((first >= 0)) || die "no FROM in $dockerfile"
stage=("${all[@]:$first}")
[[ "${stage[0]}" =~ ^FROM[[:space:]]+debian:bookworm-slim[[:space:]]*$ ]] \
  || die "the runtime stage starts with '${stage[0]}'; this script builds debian:bookworm-slim only"

# Base instructions (COPY from the build context, RUN) up to the first COPY --from; the rest
# (COPY --from, ENV, USER, ENTRYPOINT, CMD) after.
base=() rest=()
for ins in "${stage[@]:1}"; do
  if ((${#rest[@]})) || [[ "$ins" =~ ^COPY[[:space:]]+--from= ]]; then rest+=("$ins"); else base+=("$ins"); fi
done

# --- The base root filesystem ---------------------------------------------------------------------
# Hashed: this script, the stage's instructions (all of them, so that a line taken out of the
# Dockerfile leaves nothing behind here either), and the repository files the base copies in.
hash_input() {
  cat "${BASH_SOURCE[0]}"
  printf '%s\n' "${rest[@]}"
  local ins words
  for ins in "${base[@]}"; do
    printf '%s\n' "$ins"
    if [[ "$ins" =~ ^COPY[[:space:]] ]]; then
      read -r -a words <<<"$ins"
      ((${#words[@]} == 3)) || die "unhandled COPY in the runtime stage: $ins"
      [[ "${words[1]}" != -* ]] || die "unhandled COPY flag in the runtime stage: $ins"
      cat "$repo/${words[1]}"
    fi
  done
}
hash="$(hash_input | sha256sum | cut -c1-16)"
roots="$cache/image-rootfs"
rootfs="$roots/$hash"
mkdir -p "$roots"
exec 9>"$roots/.lock"
flock 9

if [ ! -d "$rootfs" ]; then
  command -v mmdebstrap >/dev/null || {
    log "installing mmdebstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap
  }
  work="$(mktemp -d)"
  trap 'rm -rf "$work" "$rootfs.tmp"' EXIT
  # The stage's own steps as mmdebstrap's customize hook (run with /proc, /dev and the host's
  # DNS set up inside), in the environment Docker gives RUN.
  {
    echo 'set -euo pipefail'
    echo 'root="$1"'
    for ins in "${base[@]}"; do
      case "$ins" in
        COPY\ *)
          read -r -a words <<<"$ins"
          printf 'mkdir -p "$root"%q\n' "$(dirname "${words[2]}")"
          printf 'cp -- %q "$root"%q\n' "$repo/${words[1]}" "${words[2]}" ;;
        RUN\ \[*) die "unhandled exec-form RUN in the runtime stage: $ins" ;;
        RUN\ *)
          printf 'chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /bin/sh -c %q\n' \
            "${ins#RUN }" ;;
        *) die "unhandled instruction before the COPY --from lines of the runtime stage: $ins" ;;
      esac
    done
  } > "$work/customize.sh"
  # minbase (Priority: required, and apt) is the package set debian:bookworm-slim is made of
  # (debuerreotype); the dpkg exclusions are its "slim" ones. The suites are the image's.
  log "building the base root filesystem $rootfs (mmdebstrap, a few minutes; log: $rootfs.log)"
  rm -rf "$rootfs.tmp"
  mmdebstrap --quiet --variant=minbase --components=main \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook="bash $work/customize.sh \"\$1\"" \
    bookworm "$rootfs.tmp" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" >"$rootfs.log" 2>&1 \
    || { tail -n 40 "$rootfs.log" >&2; die "mmdebstrap failed (whole log: $rootfs.log)"; }
  mv "$rootfs.tmp" "$rootfs"
  rm -rf "$work"
  trap - EXIT
  log "built $rootfs ($(du -sh "$rootfs" | cut -f1))"
fi
touch "$rootfs"
# Bases of other versions of the stage, unused for a week, go.
find "$roots" -mindepth 1 -maxdepth 1 -name '????????????????*' ! -name "$hash*" -mtime +7 \
  -exec rm -rf {} + 2>/dev/null || true

if [ -z "$binary" ]; then
  echo "rootfs $rootfs"
  exit 0
fi

# --- The image's files -------------------------------------------------------------------------
# The build stage's paths and their equivalents here: its /opt/meeting-agent is the cache
# (scripts/setup.sh lays it out the same way), /src the repository, and its release binary the
# one given. Files are hard-linked where they can be (the cache and the base share a disk).
models_of() { # the files models/fetch_models.sh makes for each model name it is given
  local name
  manifest() { awk -v s="[models.$1]" '$0 == s {in_s = 1; next} /^\[/ {in_s = 0}
    in_s && $1 == "output" { sub(/^[^=]*= *"?/, ""); sub(/"? *$/, ""); print; exit }' "$repo/models/manifest.toml"; }
  for name in "$@"; do
    case "$name" in
      whisper-tiny-en | whisper-base | silero-vad) manifest "$name" ;;
      selfie-segmentation) manifest selfie-segmentation; manifest selfie-segmentation-landscape ;;
      deepfilternet)
        manifest deepfilternet3; manifest deepfilternet3-config; manifest deepfilternet3-reference
        echo deepfilternet3-reference/DeepFilterNet3_onnx.tar.gz ;;
      *) die "the Dockerfile fetches model '$name', which this script cannot place" ;;
    esac
  done
}
# The models the build stage fetches: the names on the Dockerfile's fetch_models.sh line.
fetch_line="$(printf '%s\n' "${all[@]}" | grep -o 'models/fetch_models\.sh[^&;|]*' | head -n1)"
[ -n "$fetch_line" ] || die "no models/fetch_models.sh line in the Dockerfile's build stage"
read -r -a model_names <<<"${fetch_line#models/fetch_models.sh}"

put() { # SRC DEST: a file or a folder's contents, as COPY does
  local src="$1" dest="$rootfs$2"
  [ -e "$src" ] || die "$src is missing (run scripts/setup.sh)"
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  if [ -d "$src" ]; then
    mkdir -p "$dest"
    cp -a --link "$src/." "$dest/" 2>/dev/null || { rm -rf "$dest"; cp -a "$src" "$dest"; }
  else
    cp -a --link "$src" "$dest" 2>/dev/null || cp -a "$src" "$dest"
  fi
}

envs=() user="" entrypoint=() cmd=()
json_words() { python3 -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "$1"; }
for ins in "${rest[@]}"; do
  read -r -a words <<<"$ins"
  case "${words[0]}" in
    COPY)
      ((${#words[@]} == 4)) && [ "${words[1]}" = --from=build ] || die "unhandled COPY in the runtime stage: $ins"
      src="${words[2]}" dest="${words[3]}"
      case "$src" in
        /opt/meeting-agent/models)
          rm -rf "$rootfs$dest"
          while read -r f; do put "$cache/models/$f" "$dest/$f"; done < <(models_of "${model_names[@]}") ;;
        /opt/meeting-agent/*) put "$cache/${src#/opt/meeting-agent/}" "$dest" ;;
        /src/target/release/meeting-agent) put "$binary" "$dest" ;;
        /src/*) put "$repo/${src#/src/}" "$dest" ;;
        *) die "unhandled COPY source in the runtime stage: $ins" ;;
      esac ;;
    ENV)
      for w in "${words[@]:1}"; do
        [[ "$w" =~ ^[A-Za-z_][A-Za-z0-9_]*=[^\"\'\$]*$ ]] || die "unhandled ENV in the runtime stage (NAME=VALUE without quotes): $ins"
        envs+=("$w")
      done ;;
    USER)
      ((${#words[@]} == 2)) || die "unhandled USER: $ins"
      user="${words[1]}" ;;
    ENTRYPOINT) mapfile -t entrypoint < <(json_words "${ins#ENTRYPOINT }") ;;
    CMD) mapfile -t cmd < <(json_words "${ins#CMD }") ;;
    *) die "unhandled instruction after the COPY --from lines of the runtime stage: $ins" ;;
  esac
done

# Every library the image's programs link must be in the image: a missing one belongs in
# deploy/image/runtime-packages.txt.
for elf in /usr/bin/meeting-agent /opt/meeting-agent/livekit-ffi/liblivekit_ffi.so /opt/meeting-agent/onnxruntime/libonnxruntime.so; do
  [ -e "$rootfs$elf" ] || continue
  missing="$(chroot "$rootfs" ldd "$elf" | grep 'not found' || true)"
  [ -z "$missing" ] || die "$elf links libraries the image lacks (add their packages to deploy/image/runtime-packages.txt):
$missing"
done

echo "rootfs $rootfs"
for e in "${envs[@]}"; do echo "env $e"; done
if [ -n "$user" ]; then
  entry="$(chroot "$rootfs" getent passwd "$user")" || die "USER $user does not exist in the image"
  IFS=: read -r _ _ uid gid _ home _ <<<"$entry"
  echo "user $user $uid:$gid $home"
fi
for a in "${entrypoint[@]}"; do echo "entrypoint $a"; done
for a in "${cmd[@]}"; do echo "cmd $a"; done
