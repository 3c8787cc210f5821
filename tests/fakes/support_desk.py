"""A support system that opens tickets from the `webhook` action, as a shop's helpdesk
integration would: it checks the signature, and a retried call (same Idempotency-Key)
gets the ticket it already opened."""

from __future__ import annotations

from channels.webhook import verify_signature

from .server import FakeProvider, Reply, Request

SECRET = "support-desk-secret-0123456789"


class SupportDesk(FakeProvider):
    path = "/api/tickets"

    def __init__(self, secret: str = SECRET) -> None:
        super().__init__()
        self.secret = secret
        self.tickets: dict[str, dict[str, object]] = {}  # Idempotency-Key -> ticket

    def handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != self.path:
            return Reply(404, {"message": "no such endpoint"})
        if not verify_signature(
            self.secret, request.headers.get("x-journeys-signature"), request.body
        ):
            return Reply(401, {"message": "bad signature"})
        key = request.headers.get("idempotency-key")
        if not key:
            return Reply(400, {"message": "Idempotency-Key is required"})
        if key not in self.tickets:
            document = request.json()
            self.tickets[key] = {
                "ticket_id": f"T-{len(self.tickets) + 1}",
                "status": "open",
                "contact": document["contact"]["id"],
                "reason": document["payload"].get("reason"),
            }
        return Reply(201, self.tickets[key])
