# Production image: the release binary, LiveKit's engine library, ONNX Runtime and the models,
# all under /opt/meeting-agent (MEETING_AGENT_CACHE), laid out as scripts/setup.sh lays out the
# cache, so every default path resolves. No Docker engine runs on the development machines, so
# CI never builds this image; but its runtime stage (FROM debian:bookworm-slim on) is run:
# scripts/image_rootfs.sh reads this file and carries the stage out in a root filesystem built with
# mmdebstrap (the RUN line over the same deploy/image/runtime-packages.txt, the COPY --from lines
# with the local equivalents, ENV, USER, ENTRYPOINT, CMD; an instruction it does not know stops
# it), and tests/e2e/image_rootfs.rs runs the agent inside. The build stage follows
# scripts/setup.sh, which CI runs.
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      python3-venv cmake libclang-dev npm libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV MEETING_AGENT_CACHE=/opt/meeting-agent
RUN . scripts/versions.env \
 && python3 -m venv /opt/meeting-agent/venv \
 && /opt/meeting-agent/venv/bin/pip install -q "livekit==${LIVEKIT_WHEEL_VERSION}" "numpy==${NUMPY_VERSION}" \
 && mkdir -p /opt/meeting-agent/livekit-ffi /opt/meeting-agent/onnxruntime \
 && cp /opt/meeting-agent/venv/lib/python3*/site-packages/livekit/rtc/resources/liblivekit_ffi.so /opt/meeting-agent/livekit-ffi/ \
 && echo "${LIVEKIT_FFI_SHA256}  /opt/meeting-agent/livekit-ffi/liblivekit_ffi.so" | sha256sum -c \
 && /opt/meeting-agent/venv/bin/pip download -q --no-deps --only-binary :all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 -d /tmp/ort "onnxruntime==${ONNXRUNTIME_VERSION}" \
 && echo "${ONNXRUNTIME_WHEEL_SHA256}  /tmp/ort/${ONNXRUNTIME_WHEEL}" | sha256sum -c \
 && /opt/meeting-agent/venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], "/tmp/ort")' \
      "/tmp/ort/${ONNXRUNTIME_WHEEL}" "onnxruntime/capi/libonnxruntime.so.${ONNXRUNTIME_VERSION}" \
 && cp "/tmp/ort/onnxruntime/capi/libonnxruntime.so.${ONNXRUNTIME_VERSION}" /opt/meeting-agent/onnxruntime/libonnxruntime.so \
 && bash models/fetch_models.sh whisper-tiny-en selfie-segmentation deepfilternet \
 && rm -rf /opt/meeting-agent/downloads /tmp/ort
# The web console's player (hls.js, pinned in console/package-lock.json) is embedded by build.rs.
RUN bash scripts/console_setup.sh
# The agent's binary only (the workspace's crates/ and proto/ came with `COPY . .`; the dev
# binary, meeting-agent-dev, stays out of the image).
RUN cargo build --locked --release -p meeting-agent

FROM debian:bookworm-slim
# The runtime packages (GStreamer for recordings, CA certificates) are listed, with why, in
# deploy/image/runtime-packages.txt, which scripts/image_rootfs.sh reads too.
COPY deploy/image/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update -qq \
 && sed 's/#.*//' /tmp/runtime-packages.txt | xargs apt-get install -y -qq --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --system --home /var/lib/meeting-agent --create-home meeting-agent
COPY --from=build /opt/meeting-agent/livekit-ffi /opt/meeting-agent/livekit-ffi
COPY --from=build /opt/meeting-agent/onnxruntime /opt/meeting-agent/onnxruntime
COPY --from=build /opt/meeting-agent/models /opt/meeting-agent/models
COPY --from=build /src/target/release/meeting-agent /usr/bin/meeting-agent
# The recording graphs are built in; this copy is the starting point for `recording.pipelines_dir`.
COPY --from=build /src/pipelines /usr/share/meeting-agent/pipelines
ENV MEETING_AGENT_CACHE=/opt/meeting-agent MEETING_AGENT_DATA_DIR=/var/lib/meeting-agent \
    MEETING_AGENT_LOG_FORMAT=json
USER meeting-agent
# LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, MEETING_AGENT_DATABASE_URL and
# MEETING_AGENT_LLM_API_KEY come from the deployment's secret store.
ENTRYPOINT ["/usr/bin/meeting-agent"]
CMD ["worker"]
