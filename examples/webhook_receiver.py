"""A tokenledger webhook receiver that verifies signatures (Standard Webhooks).

Run: ``LEDGER_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py``,
then create an endpoint pointing at it (``POST /v1/webhook-endpoints``; for a
local receiver the service needs ``LEDGER_WEBHOOK_ALLOW_INSECURE=true``).
"""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

WEBHOOK = Webhook(os.environ["LEDGER_WEBHOOK_SECRET"])  # the secret shown once at creation


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:  # checks webhook-id, webhook-timestamp (5 min tolerance) and webhook-signature
            message = WEBHOOK.verify(body, {k.lower(): v for k, v in self.headers.items()})
        except WebhookVerificationError:
            self.send_response(400)
        else:
            print(
                message["type"],
                message["data"].get("account_id") or message["data"]["entry"]["account_id"],
            )
            self.send_response(204)  # any 2xx within 10 s; anything else is retried
        self.end_headers()


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", 8081), Receiver).serve_forever()
