"""A participant that follows the meeting controls' moves, as a web client of the platform does.

It joins with --token, publishes a sine tone as its microphone, and when the server tells it to
go to another room (a data message on topic "meeting.move" carrying {"room", "token"}: breakout
rooms on a LiveKit server without MoveParticipant) it leaves, joins that room with that token and
publishes again. With --wav it is silent instead of the tone, and in each breakout room it speaks
the WAV once as soon as the agent is there (--speak-at-once: as soon as it is there itself); with
--quiet it is silent throughout. Runs until SIGTERM/SIGINT. Prints JSON lines on
stdout, each with "event" and "t" (time.time()):

    {"event":"connected","room":R}              (after every join, the first and each move)
    {"event":"move_asked","room":R}             (the data message arrived)
    {"event":"data_received","room":R,"topic":T,"payload":TEXT}
    {"event":"participant_connected","room":R,"identity":I,"kind":K}
    {"event":"speaking","room":R}               (--wav: the WAV starts in a breakout)
    {"event":"text_stream","room":R,"topic":"lk.transcription","identity":I,"attributes":{..},"text":T}
                                                (captions, interim and final)
    {"event":"disconnected"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import wave

import numpy as np
from livekit import rtc

RATE = 48000
FRAME = RATE // 100
CONNECT_TIMEOUT_S = 20


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def read_wav(path: str) -> np.ndarray:
    """Mono 16-bit PCM at RATE, as the fixtures are."""
    with wave.open(path, "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, RATE):
            raise SystemExit(f"breakout_client.py: {path}: want mono 16-bit {RATE} Hz")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


async def microphone(source: rtc.AudioSource, stop: asyncio.Event, speech, agent_here,
                     room: str) -> None:
    """A 440 Hz tone, or (with speech) silence, and the speech once the agent is in the room."""
    phase = 0
    start = time.monotonic()
    sent = 0
    cursor = None  # where in `speech` the next frame starts; None: not speaking
    while not stop.is_set():
        if speech is None:
            t = (np.arange(FRAME) + phase) / RATE
            samples = (np.sin(2 * np.pi * 440.0 * t) * 0.3 * 32767).astype(np.int16)
            phase += FRAME
        else:
            if cursor is None and agent_here is not None and agent_here.is_set():
                cursor = 0
                agent_here = None  # once per room
                emit("speaking", room=room)
            samples = np.zeros(FRAME, dtype=np.int16)
            if cursor is not None and cursor < len(speech):
                chunk = speech[cursor:cursor + FRAME]
                samples[:len(chunk)] = chunk
                cursor += FRAME
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, FRAME))
        sent += 1
        await asyncio.sleep(max(0.0, start + sent / 100 - time.monotonic()))


async def visit(url: str, token: str, moves: asyncio.Queue, ended: asyncio.Event,
                speech, at_once: bool) -> None:
    """One room, until the participant is moved (a token is put in `moves`) or the end."""
    room = rtc.Room()
    stop = asyncio.Event()
    agent_here = asyncio.Event()
    readers: set = set()

    @room.on("data_received")
    def _(packet: rtc.DataPacket) -> None:
        payload = packet.data.decode("utf-8", errors="replace")
        emit("data_received", room=room.name, topic=packet.topic, payload=payload)
        if packet.topic == "meeting.move":
            try:
                move = json.loads(payload)
                emit("move_asked", room=move["room"])
                moves.put_nowait((move["room"], move["token"]))
                stop.set()
            except (ValueError, KeyError):
                pass

    def arrived(p: rtc.RemoteParticipant) -> None:
        kind = rtc.ParticipantKind.Name(p.kind).removeprefix("PARTICIPANT_KIND_").lower()
        emit("participant_connected", room=room.name, identity=p.identity, kind=kind)
        if kind == "agent":
            agent_here.set()

    room.on("participant_connected", arrived)

    async def read_text(reader: rtc.TextStreamReader, identity: str) -> None:
        text = await reader.read_all()
        emit("text_stream", room=room.name, topic=reader.info.topic, identity=identity,
             attributes=dict(reader.info.attributes or {}), text=text)

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        task = asyncio.create_task(read_text(reader, identity))
        readers.add(task)
        task.add_done_callback(readers.discard)

    room.register_text_stream_handler("lk.transcription", on_text)

    @room.on("disconnected")
    def _(reason) -> None:
        stop.set()

    await asyncio.wait_for(room.connect(url, token), CONNECT_TIMEOUT_S)
    emit("connected", room=room.name)
    for p in room.remote_participants.values():
        arrived(p)
    source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    # Speech is for the breakouts; the agent must be there to hear it.
    in_breakout = "--breakout-" in room.name
    if at_once:
        agent_here.set()
    player = asyncio.create_task(microphone(
        source, stop, speech, agent_here if in_breakout else None, room.name))
    ending = asyncio.create_task(ended.wait())
    await asyncio.wait([asyncio.create_task(stop.wait()), ending],
                       return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    await player
    await room.disconnect()


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--wav", default=None, metavar="PATH",
                   help="speak this (mono 16-bit 48 kHz) once in each breakout room")
    p.add_argument("--quiet", action="store_true", help="a silent microphone, no tone")
    p.add_argument("--speak-at-once", action="store_true",
                   help="speak as soon as it is in the breakout, not once the agent is there")
    args = p.parse_args()
    speech = read_wav(args.wav) if args.wav else None
    if args.quiet and speech is None:
        speech = np.zeros(0, dtype=np.int16)
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ended.set)
    moves: asyncio.Queue = asyncio.Queue()
    token = args.token
    while not ended.is_set():
        try:
            await visit(args.url, token, moves, ended, speech, args.speak_at_once)
        except (rtc.ConnectError, asyncio.TimeoutError) as e:
            print(f"breakout_client.py: cannot connect: {e or 'timed out'}", file=sys.stderr)
            return 1
        if ended.is_set() or moves.empty():
            break  # ended, or removed from the room without being moved
        _, token = moves.get_nowait()
    emit("disconnected")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
