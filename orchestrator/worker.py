"""Builds the Temporal worker that runs journeys, and connects to Temporal."""

from __future__ import annotations

import importlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine
from temporalio.client import Client, TLSConfig
from temporalio.worker import Worker

from channels.base import Channel
from channels.registry import adapter_class

from .activities import journey_activities
from .links import MessageLinks
from .rendering import Renderer
from .settings import Settings
from .workflows.journey import JourneyWorkflow
from .workflows.kit import JourneyBase


def python_journeys(settings: Settings) -> list[type[JourneyBase]]:
    """Hand-written journeys named in JOURNEYS_PYTHON_JOURNEYS ("package.module:Class")."""
    found = []
    if settings.python_journeys and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # modules next to journeys/, like a project's own
    for path in settings.python_journeys:
        module_name, _, attr = path.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(
                f"JOURNEYS_PYTHON_JOURNEYS: cannot import {path!r} ({exc}); "
                "expected 'package.module:ClassName' importable from the working directory"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, JourneyBase) and cls.trigger_event):
            raise ValueError(
                f"JOURNEYS_PYTHON_JOURNEYS: {path!r} must be a JourneyBase workflow class "
                "with journey_id and trigger_event set"
            )
        found.append(cls)
    return found


def channel_adapters(settings: Settings) -> dict[str, Channel]:
    """One adapter instance per logical channel, as configured."""
    built: dict[str, Channel] = {}
    for channel in ("email", "push", "sms"):
        cls = adapter_class(settings.adapter_for(channel))
        built[channel] = cls.from_settings(settings)
    return built


async def connect(settings: Settings, address: str | None = None) -> Client:
    """Connect to Temporal (TLS and API key from settings, as Temporal Cloud needs)."""
    tls: bool | TLSConfig = settings.temporal_tls
    if settings.temporal_tls_cert or settings.temporal_tls_ca:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes()
            if settings.temporal_tls_cert
            else None,
            client_private_key=settings.temporal_tls_key.read_bytes()
            if settings.temporal_tls_key
            else None,
            server_root_ca_cert=settings.temporal_tls_ca.read_bytes()
            if settings.temporal_tls_ca
            else None,
        )
    if settings.temporal_api_key and tls is False:
        tls = True
    return await Client.connect(
        address or settings.temporal_address or f"127.0.0.1:{settings.temporal_port}",
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key,
        tls=tls,
    )


def build_worker(
    client: Client,
    engine: Engine,
    settings: Settings,
    adapters: dict[str, Channel] | None = None,
    task_queue: str | None = None,
    **options: object,
) -> Worker:
    renderer = Renderer.from_settings(settings)
    links = MessageLinks.from_settings(settings)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[JourneyWorkflow, *python_journeys(settings)],
        activities=journey_activities(
            engine, renderer, adapters or channel_adapters(settings), links
        ),
        activity_executor=ThreadPoolExecutor(max_workers=16),
        **options,  # type: ignore[arg-type]
    )
