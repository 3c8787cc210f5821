"""Secrets as messages and logs may show them.

Settings errors, start-up lines and database errors all print connection URLs; they
share this one rule so none of them prints a password.
"""

from __future__ import annotations

from sqlalchemy import make_url


def redact_url(url: str) -> str:
    """The URL as error messages and logs may show it: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable>"
