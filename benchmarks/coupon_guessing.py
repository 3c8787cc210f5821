"""How fast a client can guess coupon codes through the real API, with and without the
coupon limit.

Serves `orchestrator.api.create_app` with uvicorn on loopback (a temporary SQLite
store, one write key), then sends `GET /v1/coupons/<random code>` for a few seconds
with C requests in flight, and counts the answers: 404 is a guess the API answered,
429 one it refused. Three runs, each on a fresh app:

- `off`: `JOURNEYS_COUPON_RATE_LIMIT=none` (how fast guessing goes unthrottled);
- `one address`: the default limit, every request from one client address;
- `many addresses`: the default limit, each request from another address (sent as
  `X-Forwarded-For`, which uvicorn trusts from 127.0.0.1), so only the key's limit holds.

    python benchmarks/coupon_guessing.py [--seconds 5] [--concurrency 20]

Prints guesses answered per second for each run. The target: with the default limit,
at most ~1 guess/s per address and ~3 per key once the reserve is spent.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import socket
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import uvicorn

from orchestrator.api import create_app
from orchestrator.settings import Settings
from orchestrator.store.coupons import ALPHABET
from orchestrator.store.db import make_engine, migrate, sqlite_url

KEY = "bench-write-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run(label: str, limit: str, rotate: bool, seconds: float, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(sqlite_url(Path(tmp)))
        migrate(engine)
        app = create_app(engine, [KEY], settings=Settings(coupon_rate_limit=limit))
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        answers: Counter[int] = Counter()
        addresses = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in itertools.count(1))
        deadline = time.perf_counter() + seconds

        async def guesser(client: httpx.AsyncClient) -> None:
            while time.perf_counter() < deadline:
                code = "WELCOME-" + "".join(secrets.choice(ALPHABET) for _ in range(8))
                headers = {"X-Forwarded-For": next(addresses)} if rotate else {}
                r = await client.get(f"/v1/coupons/{code}", headers=headers)
                answers[r.status_code] += 1

        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, auth=(KEY, "")) as client:
            start = time.perf_counter()
            await asyncio.gather(*(guesser(client) for _ in range(concurrency)))
            elapsed = time.perf_counter() - start
        server.should_exit = True
        await serving
        engine.dispose()
    guesses, refused = answers.pop(404, 0), answers.pop(429, 0)
    print(
        f"{label:>15}: {guesses / elapsed:7.1f} guesses/s answered ({guesses}), "
        f"{refused / elapsed:7.1f}/s refused with 429, other answers {dict(answers)}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    default = Settings.model_fields["coupon_rate_limit"].default
    for label, limit, rotate in (
        ("off", "none", False),
        ("one address", default, False),
        ("many addresses", default, True),
    ):
        await run(label, limit, rotate, args.seconds, args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
