"""Builds the Temporal worker that runs journeys, and connects to Temporal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine
from temporalio.client import Client, TLSConfig
from temporalio.worker import Worker

from channels.base import Channel
from channels.registry import adapter_class

from .activities import journey_activities
from .rendering import Renderer
from .settings import Settings
from .workflows.journey import JourneyWorkflow


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
    renderer = Renderer(settings.templates_dir)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[JourneyWorkflow],
        activities=journey_activities(engine, renderer, adapters or channel_adapters(settings)),
        activity_executor=ThreadPoolExecutor(max_workers=16),
        **options,  # type: ignore[arg-type]
    )
