"""Locale tags, the fallback chain from a contact's locale to the default, and text direction.

Contacts arrive with whatever their storefront sends (`ru-RU`, `sr_Latn_RS`,
`AR`); template folders are named by the marketer (`ru`, `sr-Latn`, `ar`).
Both are normalised to Babel's form (`sr_Latn_RS`) before they are compared.
"""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError


@lru_cache(maxsize=1024)
def parse(tag: str | None) -> Locale | None:
    """The Babel locale for a tag in either `-` or `_` form, or None when it is not one."""
    if not tag or not isinstance(tag, str) or len(tag) > 35:
        return None
    try:
        return Locale.parse(tag.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def canonical(tag: str | None) -> str | None:
    """`sr-latn-rs` → `sr_Latn_RS`; None for a tag Babel does not know."""
    locale = parse(tag)
    return str(locale) if locale is not None else None


def chain(requested: str | None, default: str) -> list[str]:
    """Most specific first: `sr_Latn_RS`, `sr_Latn`, `sr`, then the default's own chain."""
    out: list[str] = []
    for tag in (requested, default):
        locale = parse(tag)
        if locale is None:
            continue
        for candidate in (
            str(locale),
            "_".join(p for p in (locale.language, locale.script) if p),
            "_".join(p for p in (locale.language, locale.territory) if p),
            locale.language,
        ):
            if candidate not in out:
                out.append(candidate)
    return out


def direction(tag: str | None) -> str:
    """`rtl` for right-to-left scripts (Arabic, Hebrew, Persian…), else `ltr`."""
    locale = parse(tag)
    return "rtl" if locale is not None and locale.character_order == "right-to-left" else "ltr"


def language(tag: str | None) -> str:
    """The BCP 47 tag for `<html lang>`: `sr-Latn`, `ar`, `en-US`."""
    locale = parse(tag)
    return str(locale).replace("_", "-") if locale is not None else "en"
