#!/usr/bin/env python3
"""A webhook receiver that verifies Herald's signatures (Python standard
library only). Run it, point a webhook at http://127.0.0.1:9000/hook, and
it prints every event whose signatures check out.

    HERALD_SECRET=whsec_... python3 examples/receiver.py [port]

It checks both schemes Herald sends:
  * Standard Webhooks: webhook-signature = v1,<base64 HMAC-SHA256> over
    "{webhook-id}.{webhook-timestamp}.{body}", keyed with the base64-decoded
    part of the secret after "whsec_"; the timestamp must be within 5 minutes.
  * X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the body>, keyed with the
    whole secret string.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ.get("HERALD_SECRET", "")
TOLERANCE_SECONDS = 5 * 60


def verify_standard(secret, msg_id, timestamp, body, header):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # Several space-separated signatures while a rotated secret overlaps.
    for candidate in header.split(" "):
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return abs(time.time() - int(timestamp)) <= TOLERANCE_SECONDS
    return False


def verify_hex(secret, body, header):
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header, expected)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        ok = verify_standard(
            SECRET,
            self.headers.get("webhook-id", ""),
            self.headers.get("webhook-timestamp", "0"),
            body,
            self.headers.get("webhook-signature", ""),
        ) and verify_hex(SECRET, body, self.headers.get("x-webhook-signature", ""))
        if not ok:
            print("rejected: bad signature", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)
        print(f"verified {event['type']} {event['id']}: {json.dumps(event['data'])}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if not SECRET.startswith("whsec_"):
        sys.exit("set HERALD_SECRET to the webhook's secret (whsec_...)")
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
