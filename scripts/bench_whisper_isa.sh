#!/usr/bin/env bash
# whisper_avx2_vs_avx512_ratio: whisper.cpp (the sources whisper-rs builds) compiled twice on
# this machine, for its own instruction set (AVX-512 here) and for AVX2 only (what a machine
# without AVX-512 runs), timed on the same clip with the same model and threads. The ratio
# scales this machine's caption figures to a machine without AVX-512 of the same clock.
# Usage: scripts/bench_whisper_isa.sh [THREADS] [REPEATS]   (builds into the cache, once)
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-1}"
repeats="${2:-3}"
cache="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}"
src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/whisper-rs-sys-0.15.0/whisper.cpp | head -1)"
model="$cache/models/ggml-tiny.en.bin"
clip="$cache/fixtures/wer-set.wav"
[ -d "$src" ] && [ -f "$model" ] && [ -f "$clip" ] || {
    echo "needs whisper-rs-sys 0.15.0's sources (cargo build), $model and $clip (scripts/setup.sh)" >&2
    exit 1
}
work="$cache/tools/whisper-isa"
mkdir -p "$work"
pcm="$work/clip.f32"
sox "$clip" -r 16000 -c 1 -e floating-point -b 32 -t raw "$pcm"
build() { # name, cmake flags...
    local name="$1"
    shift
    if [ ! -x "$work/$name/bench" ]; then
        cmake -S "$src" -B "$work/$name/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
            -DWHISPER_BUILD_EXAMPLES=OFF -DWHISPER_BUILD_TESTS=OFF "$@" >/dev/null
        cmake --build "$work/$name/build" -j2 --target whisper >/dev/null
        local libs
        libs="$(find "$work/$name/build" -name '*.a' | sort -r | tr '\n' ' ')"
        # shellcheck disable=SC2086
        g++ -O2 -o "$work/$name/bench" -x c scripts/whisper_isa/bench.c -x none \
            -I"$src/include" -I"$src/ggml/include" -Wl,--start-group $libs -Wl,--end-group -fopenmp -lpthread -lm
    fi
}
build native -DGGML_NATIVE=ON
build avx2 -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
    -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF
best() { # the fastest of the repeats, seconds
    "$work/$1/bench" "$model" "$pcm" "$threads" "$repeats" 2>/dev/null | awk 'NR==1||$1<m{m=$1;s=$2} END{print m, s}'
}
read -r native secs < <(best native)
read -r avx2 _ < <(best avx2)
grep -o 'avx512[a-z_]*' /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/^/cpu: /'
echo
echo "native: ${native} s, AVX2 only: ${avx2} s for ${secs} s of speech (tiny.en, ${threads} thread(s), best of ${repeats})"
machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date +%F)"
awk -v a="$avx2" -v n="$native" -v t="$threads" -v r="$repeats" -v m="$machine" 'BEGIN {
    printf "| whisper_avx2_vs_avx512_ratio | %.2f | AVX2-only build time / native (AVX-512) build time, same machine and clip | - | `scripts/bench_whisper_isa.sh %s %s` | %s |\n", a / n, t, r, m }'
