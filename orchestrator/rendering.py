"""The sandboxed Jinja environment that turns a message template into channel parts.

Layout: `templates/<message>/<channel>.<part>`, for example
`templates/cart_reminder/email.subject`, `email.html`, `email.text`,
`push.title`, `push.body`, `sms.body`. Rendering runs in activities only.
Undefined variables raise (StrictUndefined) instead of sending blanks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment

PARTS = {
    "email": ("subject", "preheader", "html", "text"),
    "push": ("title", "body"),
    "sms": ("body",),
}
REQUIRED = {"email": ("subject",), "push": ("title", "body"), "sms": ("body",)}
MAX_OUTPUT = 512 * 1024


class RenderError(ValueError):
    """A template that cannot produce a message: missing part, undefined variable, bad output."""


class Renderer:
    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(templates_dir)),
            autoescape=lambda name: bool(name) and name.endswith(".html"),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
        )

    def has_channel(self, template: str, channel: str) -> bool:
        folder = self.templates_dir / template
        return all((folder / f"{channel}.{part}").is_file() for part in REQUIRED[channel]) and (
            channel != "email" or any((folder / f"email.{p}").is_file() for p in ("html", "text"))
        )

    def render(self, template: str, channel: str, context: dict[str, Any]) -> dict[str, str]:
        if not self.has_channel(template, channel):
            raise RenderError(f"template {template!r} has no complete {channel} version")
        parts: dict[str, str] = {}
        for part in PARTS[channel]:
            name = f"{template}/{channel}.{part}"
            try:
                text = self.env.get_template(name).render(context)
            except TemplateNotFound:
                continue
            except TemplateError as exc:
                raise RenderError(f"{name}: {exc}") from exc
            if len(text) > MAX_OUTPUT:
                raise RenderError(f"{name}: rendered output is larger than {MAX_OUTPUT} bytes")
            parts[part] = text.strip() if part != "html" else text
        for header in ("subject", "preheader", "title"):
            if "\r" in parts.get(header, "") or "\n" in parts.get(header, ""):
                raise RenderError(f"{template}/{channel}.{header}: line breaks are not allowed")
        return parts
