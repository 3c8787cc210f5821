"""Provider feedback: what SendGrid and Twilio report about our messages, as events.

Each report becomes a `track` row in the `events` table (delivered, opened, bounced,
STOP replies, inbound SMS...), committed together with the suppression and consent
changes it implies, before the provider gets its 2xx. The router then records the
message's status timeline and wakes the run that sent it (`store/engagement.py`).

Nothing here knows about HTTP: `webhooks.py` in the API verifies and reads requests,
these modules verify signatures, map provider payloads and write the store.
"""
