"""A real LiveKit participant that publishes a test tone and a moving test pattern.

Integration tests and benchmarks spawn this script as the "second real participant"
in a room. It joins with a token signed by the given API key/secret, publishes

* audio ("mic", source MICROPHONE): a continuous sine at --tone-hz, amplitude 0.3
  full scale, mono 16-bit PCM in 10 ms frames paced in real time;
* video ("camera", source CAMERA): RGBA frames at --fps showing a dark horizontal
  gradient, a bright white vertical bar that moves 8 px right per frame, and the
  frame counter in the top-left corner as 16 cells of 16x16 px, least significant
  bit first (white = 1, black = 0),

and reports what happens in the room as JSON lines on stdout, each carrying
"event" and "t" (time.time()). It runs until SIGTERM/SIGINT or --duration, then
disconnects and exits 0; a failed connect exits 1 with a message on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import warnings
import wave

import numpy as np
from livekit import api, rtc

AMPLITUDE = 0.3
FRAME_MS = 10
BAR_WIDTH = 16
BAR_STEP = 8
COUNTER_BITS = 16
COUNTER_CELL = 16
CONNECT_TIMEOUT_S = 20
# Encoder budget per pixel per frame; without an explicit VideoEncoding the SDK's
# preset for the size caps the frame rate (640x360 arrived at 25 fps, not 30).
VIDEO_BITS_PER_PIXEL = 0.2

# PyJWT warns about short HMAC keys such as the dev secret "secret".
warnings.filterwarnings("ignore", message="The HMAC key is")


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default=os.environ.get("LIVEKIT_URL", "ws://127.0.0.1:7880"))
    p.add_argument("--api-key", default=os.environ.get("LIVEKIT_API_KEY", "devkey"))
    p.add_argument("--api-secret", default=os.environ.get("LIVEKIT_API_SECRET", "secret"))
    p.add_argument("--room", required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--name", default=None)
    p.add_argument("--tone-hz", type=float, default=440.0, help="0 = no audio track")
    p.add_argument("--wav", default=None, metavar="PATH",
                   help="publish this 16-bit WAV (looped) as the microphone instead of the tone")
    p.add_argument("--once", action="store_true",
                   help="play the WAV once, then keep the microphone open with silence")
    p.add_argument("--sample-rate", type=int, default=48000)
    p.add_argument("--video", default="640x360", help='WxH, or "none" for no video track')
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--color", default=None, metavar="R,G,B",
                   help="a solid colour instead of the moving pattern")
    p.add_argument("--flash-beep", type=float, default=None, metavar="PERIOD_S",
                   help="A/V sync fixture: black video and silence, except a white picture and "
                        "a 1 kHz beep for the first 100 ms of every period, from one clock")
    p.add_argument("--video-source", choices=["camera", "screenshare"], default="camera")
    p.add_argument("--audio-source", choices=["microphone", "screenshare_audio"], default="microphone",
                   help="publish the audio as a microphone or as a screen share's sound")
    p.add_argument("--wait-for-agent", type=float, default=None, metavar="SECONDS",
                   help="publish only once an agent participant is in the room (at most SECONDS)")
    p.add_argument("--image-rgba", default=None, metavar="PATH",
                   help="publish this raw RGBA picture (the --video size) as the camera, still")
    p.add_argument("--simulcast", action="store_true",
                   help="publish video with simulcast layers (default: one layer at full size)")
    p.add_argument("--stutter", default=None, metavar="AT_S,FOR_S",
                   help="call-quality fixture: from AT_S seconds after the video starts, for "
                        "FOR_S seconds, send frames in 300 ms bursts after 700 ms gaps (each gap "
                        "a freeze at the receiver; a longer one would be a pause); emits "
                        "stutter_started and stutter_ended")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to stay in the room (default: until SIGTERM/SIGINT)")
    p.add_argument("--attributes", action="append", default=[], metavar="K=V",
                   help="participant attribute, repeatable (put in the token)")
    p.add_argument("--token", default=None,
                   help="join with this token (minted elsewhere) instead of signing one")
    p.add_argument("--text-topic", action="append", default=None, metavar="TOPIC",
                   help="text stream topic to read, repeatable (default: lk.transcription, lk.chat)")
    args = p.parse_args()

    if args.video == "none":
        args.size = None
    else:
        try:
            w, h = (int(v) for v in args.video.lower().split("x"))
        except ValueError:
            p.error(f"--video must be WxH or none, got {args.video!r}")
        if w <= 0 or h <= 0 or w % 2 or h % 2:
            p.error("--video width and height must be positive and even")
        args.size = (w, h)
    if args.stutter is not None:
        try:
            args.stutter = tuple(float(v) for v in args.stutter.split(","))
            assert len(args.stutter) == 2 and min(args.stutter) >= 0
        except (ValueError, AssertionError):
            p.error(f"--stutter must be AT_S,FOR_S, got {args.stutter!r}")
    if any("=" not in kv for kv in args.attributes):
        p.error("--attributes takes K=V")
    args.attributes = dict(kv.split("=", 1) for kv in args.attributes)
    args.text_topic = args.text_topic or ["lk.transcription", "lk.chat"]
    return args


def make_token(args: argparse.Namespace) -> str:
    if args.token:
        return args.token
    grants = api.VideoGrants(room_join=True, room=args.room, can_publish=True,
                             can_subscribe=True, can_publish_data=True)
    token = (api.AccessToken(args.api_key, args.api_secret)
             .with_identity(args.identity)
             .with_name(args.name or args.identity)
             .with_grants(grants))
    if args.attributes:
        token = token.with_attributes(args.attributes)
    return token.to_jwt()


def kind_name(participant: rtc.Participant) -> str:
    """ParticipantKind as a lower-case word: "standard", "agent", "sip", ..."""
    return rtc.ParticipantKind.Name(participant.kind).removeprefix("PARTICIPANT_KIND_").lower()


async def run_tone(source: rtc.AudioSource, tone_hz: float, ended: asyncio.Future) -> None:
    rate = source.sample_rate
    n = rate * FRAME_MS // 1000
    phase_step = 2 * np.pi * tone_hz / rate
    sent = 0
    while not ended.done():
        t = np.arange(sent, sent + n)
        pcm = (AMPLITUDE * 32767 * np.sin(phase_step * t)).astype(np.int16)
        # capture_frame returns once the frame is queued; it blocks while the
        # source's queue (queue_size_ms) is full, which paces us in real time.
        await source.capture_frame(rtc.AudioFrame(pcm.tobytes(), rate, 1, n))
        sent += n


def read_wav(path: str) -> tuple[np.ndarray, int, int]:
    """Interleaved int16 samples, sample rate, channel count of a 16-bit PCM WAV."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"publisher.py: {path}: only 16-bit PCM WAV is supported")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        return pcm, w.getframerate(), w.getnchannels()


async def run_wav(source: rtc.AudioSource, pcm: np.ndarray, channels: int, once: bool,
                  ended: asyncio.Future) -> None:
    n = source.sample_rate * FRAME_MS // 1000
    frames = len(pcm) // channels
    pos = 0
    silence = np.zeros(n * channels, dtype=np.int16)
    while not ended.done():
        if once and pos + n > frames:
            if pos < frames + n:
                emit("wav_finished")
                pos = frames + n
            chunk = silence
        else:
            idx = (np.arange(pos, pos + n) % frames)[:, None] * channels + np.arange(channels)
            chunk = pcm[idx.ravel()]
            pos = pos + n if once else (pos + n) % frames
        await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), source.sample_rate, channels, n))


STUTTER_PERIOD_S = 1.0
STUTTER_BURST_S = 0.3


async def run_pattern(source: rtc.VideoSource, width: int, height: int, fps: float,
                      ended: asyncio.Future, stutter=None) -> None:
    ramp = np.linspace(16, 96, width, dtype=np.uint8)
    background = np.zeros((height, width, 4), dtype=np.uint8)
    background[..., 0] = ramp
    background[..., 1] = ramp // 2
    background[..., 2] = 64
    background[..., 3] = 255
    cells = min(COUNTER_BITS, width // COUNTER_CELL)
    start = time.monotonic()
    frame_no = 0
    state = "before"
    while not ended.done():
        img = background.copy()
        x = (frame_no * BAR_STEP) % width
        img[:, x:x + BAR_WIDTH, :3] = 255
        for bit in range(cells):
            value = 255 if (frame_no >> bit) & 1 else 0
            img[:COUNTER_CELL, bit * COUNTER_CELL:(bit + 1) * COUNTER_CELL, :3] = value
        frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, img.tobytes())
        send = True
        if stutter is not None:
            into = time.monotonic() - start - stutter[0]
            if 0 <= into < stutter[1]:
                if state != "stuttering":
                    state = "stuttering"
                    emit("stutter_started")
                send = into % STUTTER_PERIOD_S < STUTTER_BURST_S
            elif into >= stutter[1] and state == "stuttering":
                state = "done"
                emit("stutter_ended")
        if send:
            source.capture_frame(frame)
        frame_no += 1
        await asyncio.sleep(max(0.0, start + frame_no / fps - time.monotonic()))


FLASH_S = 0.1
# How far ahead the beeps are written: the longest stall of this process that leaves no gap
# (stalls of 200 ms and more were seen with a second busy room on 2 cores).
FLASH_BEEP_QUEUE_MS = 1000
BEEP_HZ = 1000.0


def flash_on(t, period: float, fps: float):
    """Whether time t (seconds, scalar or array) is inside a flash: from the first video frame
    at or after each multiple of `period`, for FLASH_S. The beep starts at that frame's time
    exactly, so a frame rate that does not divide the period moves both together."""
    k = np.floor(np.asarray(t) / period)
    onset = np.ceil(k * period * fps - 1e-9) / fps
    return (t >= onset - 1e-9) & (t < onset + FLASH_S)


async def run_flash_video(source: rtc.VideoSource, width: int, height: int, fps: float,
                          period: float, clock: asyncio.Future, ended: asyncio.Future) -> None:
    white = np.full((height, width, 4), 255, dtype=np.uint8).tobytes()
    black = np.zeros((height, width, 4), dtype=np.uint8)
    black[..., 3] = 255
    black = black.tobytes()
    start = await clock
    frame_no = 0
    was_on = False
    while not ended.done():
        t = frame_no / fps
        await asyncio.sleep(max(0.0, start + t - time.monotonic()))
        on = bool(flash_on(t, period, fps))
        data = white if on else black
        if on and not was_on:
            # When the flash's first picture is captured, on the wall clock (for latency
            # measured in another process, e.g. a browser playing the live recording).
            emit("flash", epoch_ms=round((time.time() + start + t - time.monotonic()) * 1000, 1))
        was_on = on
        # Stamped with the moment the picture belongs to on the microphone's clock
        # (time.monotonic is the engine's CLOCK_MONOTONIC), so a late wake-up of this loop
        # does not move the flash.
        source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, data),
                             timestamp_us=int((start + t) * 1_000_000))
        frame_no += 1


async def run_beep_audio(source: rtc.AudioSource, period: float, video_fps: float, start: float,
                         clock: asyncio.Future, ended: asyncio.Future) -> None:
    rate = source.sample_rate
    n = rate * FRAME_MS // 1000
    sent = 0
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    while not ended.done():
        # Written ahead into the source's queue (FLASH_BEEP_QUEUE_MS), which the engine drains
        # on its own 10 ms clock from the first frame on, like a microphone's hardware clock.
        # Paced by the queue, a stall of this process shorter than the queue leaves no gap:
        # the engine fills a gap with silence, which would delay every later beep for good.
        # Should the loop fall behind anyway, it says so.
        if clock.done():
            behind = time.monotonic() - (clock.result() + sent / rate)
            if behind > FRAME_MS / 1000:
                emit("audio_underrun", ms=round(behind * 1000, 1), at_s=round(sent / rate, 2))
        t = (np.arange(sent, sent + n) / rate)
        on = flash_on(t, period, video_fps)
        pcm = (on * AMPLITUDE * 32767 * np.sin(2 * np.pi * BEEP_HZ * t)).astype(np.int16)
        await source.capture_frame(rtc.AudioFrame(pcm.tobytes(), rate, 1, n))
        if not clock.done():
            # The microphone's clock starts with its first frame (a late start of this process
            # on a busy machine moves the pictures' stamps with it, not against it).
            clock.set_result(time.monotonic())
        sent += n


async def run_still(source: rtc.VideoSource, width: int, height: int, rgba: np.ndarray,
                    fps: float, ended: asyncio.Future) -> None:
    data = rgba.tobytes()
    start = time.monotonic()
    frame_no = 0
    while not ended.done():
        source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, data))
        frame_no += 1
        await asyncio.sleep(max(0.0, start + frame_no / fps - time.monotonic()))


def watch_room(room: rtc.Room, topics: list[str], ended: asyncio.Future, readers: set) -> None:
    @room.on("participant_connected")
    def _(p: rtc.RemoteParticipant) -> None:
        emit("participant_connected", identity=p.identity, kind=kind_name(p),
             attributes=dict(p.attributes))

    @room.on("participant_disconnected")
    def _(p: rtc.RemoteParticipant) -> None:
        emit("participant_disconnected", identity=p.identity)

    @room.on("participant_attributes_changed")
    def _(changed: dict, p: rtc.Participant) -> None:
        emit("participant_attributes_changed", identity=p.identity, changed=changed)

    @room.on("track_muted")
    def _(p: rtc.Participant, pub: rtc.TrackPublication) -> None:
        emit("track_muted", identity=p.identity, sid=pub.sid)

    @room.on("track_unmuted")
    def _(p: rtc.Participant, pub: rtc.TrackPublication) -> None:
        emit("track_unmuted", identity=p.identity, sid=pub.sid)

    @room.on("track_unpublished")
    def _(pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        emit("track_unpublished", identity=p.identity, sid=pub.sid)

    @room.on("local_track_unpublished")
    def _(pub: rtc.LocalTrackPublication) -> None:
        emit("local_track_unpublished", sid=pub.sid)

    @room.on("room_metadata_changed")
    def _(old: str, new: str) -> None:
        emit("room_metadata_changed", metadata=new)

    @room.on("track_subscribed")
    def _(track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        emit("track_subscribed", identity=p.identity, sid=pub.sid, name=pub.name,
             kind=rtc.TrackKind.Name(track.kind).removeprefix("KIND_").lower())

    @room.on("data_received")
    def _(packet: rtc.DataPacket) -> None:
        emit("data_received", topic=packet.topic,
             identity=packet.participant.identity if packet.participant else None,
             payload=packet.data.decode("utf-8", errors="replace"))

    @room.on("transcription_received")
    def _(segments: list, p: rtc.Participant | None, pub: rtc.TrackPublication | None) -> None:
        emit("transcription", identity=p.identity if p else None,
             track_sid=pub.sid if pub else None,
             segments=[{"id": s.id, "text": s.text, "final": s.final, "language": s.language}
                       for s in segments])

    @room.on("disconnected")
    def _(reason: int) -> None:
        if not ended.done():
            ended.set_result(reason)

    async def read_text(reader: rtc.TextStreamReader, identity: str) -> None:
        text = await reader.read_all()
        emit("text_stream", topic=reader.info.topic, identity=identity,
             attributes=dict(reader.info.attributes or {}), text=text)

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        task = asyncio.create_task(read_text(reader, identity))
        readers.add(task)
        task.add_done_callback(readers.discard)

    for topic in topics:
        room.register_text_stream_handler(topic, on_text)


def audio_source(args):
    if args.audio_source == "screenshare_audio":
        return rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO
    return rtc.TrackSource.SOURCE_MICROPHONE


async def main() -> int:
    args = parse_args()
    loop = asyncio.get_running_loop()
    # Resolved with the DisconnectReason when the room drops us, or None on a signal
    # or at the end of --duration; the media loops run until then.
    ended: asyncio.Future = loop.create_future()

    def on_signal() -> None:
        if not ended.done():
            ended.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    room = rtc.Room()
    readers: set[asyncio.Task] = set()
    watch_room(room, args.text_topic, ended, readers)
    try:
        await asyncio.wait_for(room.connect(args.url, make_token(args)), CONNECT_TIMEOUT_S)
    except (rtc.ConnectError, asyncio.TimeoutError) as e:
        print(f"publisher.py: cannot connect to {args.url} room {args.room!r}: "
              f"{e or 'timed out'}", file=sys.stderr)
        return 1
    emit("connected", room=room.name, identity=room.local_participant.identity)
    for p in room.remote_participants.values():
        emit("participant_connected", identity=p.identity, kind=kind_name(p),
             attributes=dict(p.attributes), already_present=True)

    if args.wait_for_agent:
        deadline = time.monotonic() + args.wait_for_agent
        while not any(p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
                      for p in room.remote_participants.values()):
            if time.monotonic() > deadline:
                print("publisher.py: no agent joined the room", file=sys.stderr)
                await room.disconnect()
                return 1
            await asyncio.sleep(0.1)
        emit("agent_present")
    media = []
    start = time.monotonic() + 0.5
    # --flash-beep: the microphone's first frame starts the clock both media follow.
    flash_clock = asyncio.get_running_loop().create_future()
    if args.flash_beep:
        audio = rtc.AudioSource(args.sample_rate, 1, queue_size_ms=FLASH_BEEP_QUEUE_MS)
        track = rtc.LocalAudioTrack.create_audio_track("mic", audio)
        pub = await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=audio_source(args)))
        emit("published", kind="audio", sid=pub.sid)
        media.append(asyncio.create_task(
            run_beep_audio(audio, args.flash_beep, args.fps, start, flash_clock, ended)))
    elif args.wav or args.tone_hz > 0:
        wav = read_wav(args.wav) if args.wav else None
        rate, channels = (wav[1], wav[2]) if wav else (args.sample_rate, 1)
        audio = rtc.AudioSource(rate, channels, queue_size_ms=100)
        track = rtc.LocalAudioTrack.create_audio_track("mic", audio)
        pub = await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=audio_source(args)))
        emit("published", kind="audio", sid=pub.sid)
        player = run_wav(audio, wav[0], channels, args.once, ended) if wav else run_tone(audio, args.tone_hz, ended)
        media.append(asyncio.create_task(player))
    if args.size:
        w, h = args.size
        video = rtc.VideoSource(w, h)
        screen = args.video_source == "screenshare"
        track = rtc.LocalVideoTrack.create_video_track("screen" if screen else "camera", video)
        encoding = rtc.VideoEncoding(max_framerate=args.fps,
                                     max_bitrate=int(w * h * args.fps * VIDEO_BITS_PER_PIXEL))
        source = rtc.TrackSource.SOURCE_SCREENSHARE if screen else rtc.TrackSource.SOURCE_CAMERA
        pub = await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=source,
                                           simulcast=args.simulcast, video_encoding=encoding))
        emit("published", kind="video", sid=pub.sid)
        if args.flash_beep:
            media.append(asyncio.create_task(
                run_flash_video(video, w, h, args.fps, args.flash_beep, flash_clock, ended)))
        elif args.color:
            r, g, b = (int(v) for v in args.color.split(","))
            still = np.empty((h, w, 4), dtype=np.uint8)
            still[...] = (r, g, b, 255)
            media.append(asyncio.create_task(run_still(video, w, h, still, args.fps, ended)))
        elif args.image_rgba:
            still = np.fromfile(args.image_rgba, dtype=np.uint8)
            if still.size != w * h * 4:
                print(f"--image-rgba: {still.size} bytes, expected {w * h * 4}", file=sys.stderr)
                return 1
            media.append(asyncio.create_task(run_still(video, w, h, still, args.fps, ended)))
        else:
            media.append(asyncio.create_task(
                run_pattern(video, w, h, args.fps, ended, args.stutter)))

    await asyncio.wait([ended], timeout=args.duration)
    if not ended.done():
        ended.set_result(None)
    # Let the media loops finish their last capture rather than cancelling one
    # mid-flight, whose late FFI callback would log an error at exit.
    await asyncio.gather(*media)
    for task in list(readers):
        task.cancel()
    await room.disconnect()
    # Our own room.disconnect() does not fire the room's "disconnected" event.
    reason = ended.result()
    emit("disconnected", reason=rtc.DisconnectReason.Name(
        rtc.DisconnectReason.CLIENT_INITIATED if reason is None else reason))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
