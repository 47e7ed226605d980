# Production image: the release binary and LiveKit's engine library, nothing else.
# (No Docker engine runs on the development machines, so this file is not exercised by CI.)
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG LIVEKIT_WHEEL_VERSION=1.2.1
RUN python3 -m venv /venv && /venv/bin/pip install -q "livekit==${LIVEKIT_WHEEL_VERSION}" \
 && . scripts/versions.env \
 && cp /venv/lib/python3*/site-packages/livekit/rtc/resources/liblivekit_ffi.so /liblivekit_ffi.so \
 && echo "${LIVEKIT_FFI_SHA256}  /liblivekit_ffi.so" | sha256sum -c
RUN cargo build --locked --release

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/meeting-agent meeting-agent
COPY --from=build /liblivekit_ffi.so /usr/lib/meeting-agent/liblivekit_ffi.so
COPY --from=build /src/target/release/meeting-agent /usr/bin/meeting-agent
ENV LIVEKIT_LIB_PATH=/usr/lib/meeting-agent/liblivekit_ffi.so MEETING_AGENT_LOG_FORMAT=json
USER meeting-agent
# LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET come from the deployment's secret store.
ENTRYPOINT ["/usr/bin/meeting-agent"]
CMD ["worker"]
