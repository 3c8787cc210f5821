"""`python -m examples.storefront`: run shoppers against a journeys API (see README.md).

python -m examples.storefront --shoppers 20 --seed 1
python -m examples.storefront opens --log dev.log --rate 0.5 --follow 120
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .opens import open_emails
from .shoppers import plan
from .simulator import segment_client, send, summary

DEV_KEY_FILE = Path(".journeys/write_key")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="the journeys API")
    parser.add_argument(
        "--write-key",
        help=f"a write key (default: the dev key in {DEV_KEY_FILE}, as `journeys dev` keeps it)",
    )
    parser.add_argument("--seed", type=int, default=1, help="same seed, same shoppers")


def _write_key(given: str | None) -> str:
    if given:
        return given
    if DEV_KEY_FILE.is_file():
        return DEV_KEY_FILE.read_text().strip()
    sys.exit(
        f"no write key: pass --write-key, or run from the folder where `journeys dev` "
        f"keeps {DEV_KEY_FILE}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["opens"]:
        parser = argparse.ArgumentParser(
            prog="python -m examples.storefront opens",
            description="Open a share of the emails `journeys dev` printed (Email Opened).",
        )
        _common(parser)
        parser.add_argument("--log", type=Path, required=True, help="saved `journeys dev` output")
        parser.add_argument("--rate", type=float, default=0.5, help="share of emails opened")
        parser.add_argument("--follow", type=float, default=0.0, help="keep reading N seconds")
        args = parser.parse_args(argv[1:])
    else:
        parser = argparse.ArgumentParser(
            prog="python -m examples.storefront",
            description="Simulated shoppers, sent through Segment's Python client.",
        )
        _common(parser)
        parser.add_argument("--shoppers", type=int, default=20)
        parser.add_argument("--pace", type=float, default=0.0, help="seconds between shoppers")
        args = parser.parse_args(argv)

    errors: list[Exception] = []
    client = segment_client(args.host, _write_key(args.write_key), errors)
    if argv[:1] == ["opens"]:
        opened = open_emails(client, args.log, args.seed, args.rate, args.follow, print)
        print(f"opened {len(opened)} emails")
    else:
        shoppers = plan(args.shoppers, args.seed)
        send(shoppers, client, args.pace, print)
        print(summary(shoppers))
    client.join()
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
