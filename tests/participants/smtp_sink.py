"""A local SMTP server for the tests (aiosmtpd): accepts every message and prints one JSON
line per message on stdout.

    smtp_sink.py --port PORT

Prints {"event": "listening", "port": P}; then per message {"event": "mail", "from", "to",
"subject", "headers", "text", "html", "t"}, the parts decoded. Exits on SIGTERM.
"""

import argparse
import asyncio
import email
import email.policy
import json
import signal
import sys
import time

from aiosmtpd.controller import Controller


def say(**event):
    event["t"] = time.time()
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Sink:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        say(
            event="mail",
            sender=envelope.mail_from,
            to=list(envelope.rcpt_tos),
            subject=str(message["subject"]),
            headers={k: str(v) for k, v in message.items()},
            text=text.get_content() if text else None,
            html=html.get_content() if html else None,
        )
        return "250 OK"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    controller = Controller(Sink(), hostname="127.0.0.1", port=args.port)
    controller.start()
    say(event="listening", port=args.port)
    stop = asyncio.Event()

    async def wait():
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    asyncio.run(wait())
    controller.stop()


if __name__ == "__main__":
    main()
