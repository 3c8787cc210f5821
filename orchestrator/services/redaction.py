"""Secrets as messages and logs may show them.

Settings errors, start-up lines and database errors all print connection URLs; they
share this one rule so none of them prints a password.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import make_url


def redact_url(url: str) -> str:
    """The URL as error messages and logs may show it: its password, and every query
    parameter whose name says password (libpq's `?password=`, `sslpassword=`), as ***.
    A URL whose host part holds more than one `@` (a password with an unencoded `@`)
    cannot be told apart safely: it is not shown."""
    try:
        if urlsplit(url).netloc.count("@") > 1:
            return "<unparseable>"
        parsed = make_url(url)
        hidden = {name: "***" for name in parsed.query if "password" in name.lower()}
        if hidden:
            parsed = parsed.update_query_dict(hidden)
        return parsed.render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")
    except Exception:
        return "<unparseable>"
