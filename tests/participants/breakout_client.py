"""A participant that follows the meeting controls' moves, as a web client of the platform does.

It joins with --token, publishes a sine tone as its microphone, and when the server tells it to
go to another room (a data message on topic "meeting.move" carrying {"room", "token"}: breakout
rooms on a LiveKit server without MoveParticipant) it leaves, joins that room with that token and
publishes again. Runs until SIGTERM/SIGINT. Prints JSON lines on stdout, each with "event" and
"t" (time.time()):

    {"event":"connected","room":R}              (after every join, the first and each move)
    {"event":"move_asked","room":R}             (the data message arrived)
    {"event":"data_received","room":R,"topic":T,"payload":TEXT}
    {"event":"participant_connected","room":R,"identity":I,"kind":K}
    {"event":"disconnected"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

import numpy as np
from livekit import rtc

RATE = 48000
FRAME = RATE // 100
CONNECT_TIMEOUT_S = 20


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


async def tone(source: rtc.AudioSource, stop: asyncio.Event) -> None:
    phase = 0
    start = time.monotonic()
    sent = 0
    while not stop.is_set():
        t = (np.arange(FRAME) + phase) / RATE
        samples = (np.sin(2 * np.pi * 440.0 * t) * 0.3 * 32767).astype(np.int16)
        phase += FRAME
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, FRAME))
        sent += 1
        await asyncio.sleep(max(0.0, start + sent / 100 - time.monotonic()))


async def visit(url: str, token: str, moves: asyncio.Queue, ended: asyncio.Event) -> None:
    """One room, until the participant is moved (a token is put in `moves`) or the end."""
    room = rtc.Room()
    stop = asyncio.Event()

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

    @room.on("participant_connected")
    def _(p: rtc.RemoteParticipant) -> None:
        kind = rtc.ParticipantKind.Name(p.kind).removeprefix("PARTICIPANT_KIND_").lower()
        emit("participant_connected", room=room.name, identity=p.identity, kind=kind)

    @room.on("disconnected")
    def _(reason) -> None:
        stop.set()

    await asyncio.wait_for(room.connect(url, token), CONNECT_TIMEOUT_S)
    emit("connected", room=room.name)
    for p in room.remote_participants.values():
        kind = rtc.ParticipantKind.Name(p.kind).removeprefix("PARTICIPANT_KIND_").lower()
        emit("participant_connected", room=room.name, identity=p.identity, kind=kind)
    source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    player = asyncio.create_task(tone(source, stop))
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
    args = p.parse_args()
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ended.set)
    moves: asyncio.Queue = asyncio.Queue()
    token = args.token
    while not ended.is_set():
        try:
            await visit(args.url, token, moves, ended)
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
