"""Message templates: the sandboxed Jinja environment, locales, formatting and checks."""

from .renderer import Renderer, RenderError

__all__ = ["RenderError", "Renderer"]
