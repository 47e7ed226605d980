"""Room and explicit agent dispatch management through LiveKit's server APIs.

    dispatch.py create-room --room R
    dispatch.py delete-room --room R
    dispatch.py create --room R --agent-name NAME [--metadata M]
    dispatch.py list --room R

Each command prints one JSON line on stdout with "event" and "t" (time.time())
and exits 0; an API or connection error exits 1 with a message on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import warnings

import aiohttp
from google.protobuf.json_format import MessageToDict
from livekit import api

# PyJWT warns about short HMAC keys such as the dev secret "secret".
warnings.filterwarnings("ignore", message="The HMAC key is")


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def dispatch_dict(d: api.AgentDispatch) -> dict:
    return MessageToDict(d, preserving_proto_field_name=True)


def parse_args() -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    # LiveKitAPI turns ws:// and wss:// into http:// and https:// itself.
    common.add_argument("--url", default=os.environ.get("LIVEKIT_URL", "ws://127.0.0.1:7880"))
    common.add_argument("--api-key", default=os.environ.get("LIVEKIT_API_KEY", "devkey"))
    common.add_argument("--api-secret", default=os.environ.get("LIVEKIT_API_SECRET", "secret"))
    common.add_argument("--room", required=True)

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", parents=[common], help="create an agent dispatch")
    create.add_argument("--agent-name", required=True)
    create.add_argument("--metadata", default="")
    sub.add_parser("list", parents=[common], help="list the room's agent dispatches")
    sub.add_parser("create-room", parents=[common], help="create the room")
    sub.add_parser("delete-room", parents=[common], help="delete the room")
    return p.parse_args()


async def run(args: argparse.Namespace) -> None:
    async with api.LiveKitAPI(args.url, args.api_key, args.api_secret) as lk:
        if args.command == "create":
            d = await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
                room=args.room, agent_name=args.agent_name, metadata=args.metadata))
            emit("dispatch_created", id=d.id, room=d.room, agent_name=d.agent_name,
                 metadata=d.metadata)
        elif args.command == "list":
            dispatches = await lk.agent_dispatch.list_dispatch(args.room)
            emit("dispatches", room=args.room, dispatches=[dispatch_dict(d) for d in dispatches])
        elif args.command == "create-room":
            room = await lk.room.create_room(api.CreateRoomRequest(name=args.room))
            emit("room_created", room=room.name, sid=room.sid)
        else:
            await lk.room.delete_room(api.DeleteRoomRequest(room=args.room))
            emit("room_deleted", room=args.room)


def main() -> int:
    args = parse_args()
    try:
        asyncio.run(run(args))
    except (api.TwirpError, aiohttp.ClientError, asyncio.TimeoutError) as e:
        print(f"dispatch.py {args.command}: {args.url}: {e!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
