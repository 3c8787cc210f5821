"""HTTP API: Segment-compatible ingestion and health."""

from .app import create_app

__all__ = ["create_app"]
