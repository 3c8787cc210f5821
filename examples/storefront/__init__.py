"""A shop simulator: shoppers browse, fill carts, sign in, buy or leave, all through
Segment's official Python client pointed at the journeys API (README.md)."""
