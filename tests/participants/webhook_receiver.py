"""A webhook receiver for the tests: verifies each delivery with the Standard Webhooks
reference library (`standardwebhooks`) and prints one JSON line per request on stdout.

    webhook_receiver.py --port PORT --secret whsec_... [--secret whsec_...] [--fail]

Prints {"event": "listening", "port": P} once bound; then per request
{"event": "received", "id", "type", "room", "data", "signatures", "t"} for a verified delivery
(answered 204), {"event": "bad_signature", ...} (answered 401), or with --fail
{"event": "refused", ...} (answered 500). With several --secret a delivery is accepted when
any verifies it (a rotation's overlap). Exits on SIGTERM.
"""

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

LOCK = threading.Lock()


def say(**event):
    event["t"] = time.time()
    with LOCK:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", action="append", required=True)
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    verifiers = [Webhook(s) for s in args.secret]

    class Handler(BaseHTTPRequestHandler):
        # Keep-alive, as a production receiver would (every answer has a content-length).
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def answer(self, status):
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if args.fail:
                say(event="refused", id=headers.get("webhook-id"))
                return self.answer(500)
            payload, error = None, ""
            for verifier in verifiers:
                try:
                    payload = verifier.verify(body, headers)
                    break
                except Exception as e:  # the library's WebhookVerificationError
                    error = str(e)
            if payload is None:
                say(event="bad_signature", id=headers.get("webhook-id"), error=error)
                return self.answer(401)
            say(
                event="received",
                id=headers["webhook-id"],
                type=payload["type"],
                room=payload["data"].get("room"),
                data=payload["data"],
                signatures=len(headers["webhook-signature"].split(" ")),
            )
            self.answer(204)

    ThreadingHTTPServer.allow_reuse_address = True
    # socketserver's default backlog of 5 drops concurrent connections' SYNs, which the
    # kernel retries a second later.
    ThreadingHTTPServer.request_queue_size = 128
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    say(event="listening", port=server.server_address[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
