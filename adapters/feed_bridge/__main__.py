"""``python -m adapters.feed_bridge``: run the bridge until SIGINT/SIGTERM.

Settings come from the environment (see the README's feed bridge section). The hubs are
reached with the same connection settings the function app's triggers name: ``TICKS_EVENTHUB``
and ``TRADE_UPDATES_EVENTHUB``, each either a connection string or, identity-based,
``<name>__fullyQualifiedNamespace`` (with ``<name>__clientId`` for a user-assigned identity).
Exit status: 0 stopped, 1 a stream failed, 2 bad settings, 3 login refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from adapters.feed_bridge.bridge import (
    TICKS_HUB,
    TRADE_UPDATES_HUB,
    BridgeSettings,
    ExitCode,
    FeedBridge,
)
from adapters.feed_bridge.publisher import (
    ByHub,
    EventHubProducer,
    Producer,
    SignedWebhookProducer,
)
from adapters.observability import log_to_stderr
from domain.errors import ValidationError

if TYPE_CHECKING:
    from azure.eventhub.aio import EventHubProducerClient

CONNECTIONS = {TICKS_HUB: "TICKS_EVENTHUB", TRADE_UPDATES_HUB: "TRADE_UPDATES_EVENTHUB"}


def producer_client(environ: Mapping[str, str], setting: str, hub: str) -> EventHubProducerClient:
    """The client for ``hub`` from the connection setting ``setting``."""
    from azure.eventhub.aio import EventHubProducerClient

    connection = (environ.get(setting) or "").strip()
    if connection:
        return EventHubProducerClient.from_connection_string(connection, eventhub_name=hub)
    namespace = (environ.get(f"{setting}__fullyQualifiedNamespace") or "").strip()
    if not namespace:
        raise ValidationError(
            setting, f"set {setting} (a connection string) or {setting}__fullyQualifiedNamespace"
        )
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    client_id = (environ.get(f"{setting}__clientId") or "").strip()
    credential = (
        ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
    )
    return EventHubProducerClient(namespace, hub, credential)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.feed_bridge",
        description="Publish Alpaca market data and trade updates to the desk's Event Hubs.",
    )
    parser.add_argument("--symbols", default=None, help="comma-separated (default FEED_SYMBOLS)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    log_to_stderr(args.log_level)
    try:
        settings = BridgeSettings.from_environ(os.environ, symbols=args.symbols)
        producers: dict[str, Producer] = {
            TICKS_HUB: EventHubProducer(
                producer_client(os.environ, CONNECTIONS[TICKS_HUB], TICKS_HUB)
            )
        }
        if settings.trade_updates and settings.webhook_url and settings.webhook_key:
            producers[TRADE_UPDATES_HUB] = SignedWebhookProducer(
                settings.webhook_url, settings.webhook_key
            )
        elif settings.trade_updates:
            producers[TRADE_UPDATES_HUB] = EventHubProducer(
                producer_client(os.environ, CONNECTIONS[TRADE_UPDATES_HUB], TRADE_UPDATES_HUB)
            )
    except ValidationError as error:
        print(f"feed bridge: {error.field}: {error.reason}", file=sys.stderr)
        return ExitCode.BAD_SETTINGS
    return int(asyncio.run(_run(FeedBridge(settings, ByHub(producers)))))


async def _run(bridge: FeedBridge) -> ExitCode:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Windows has no signal handlers in asyncio; Ctrl+C still raises there.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return await bridge.run(stop)


if __name__ == "__main__":
    sys.exit(main())
