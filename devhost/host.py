"""The local host: settings, the app's index, HTTP triggers, timers and Event Hub feeds,
composed and run on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions.timer import TimerRequest

from devhost.app_index import AppIndex, FunctionSpec, UnsupportedApp, index_app
from devhost.eventhub import EventHubListener, EventLog, RetryPolicy, parse_timespan
from devhost.http_host import HostKeys, HttpHost
from devhost.invoke import invoke
from devhost.settings import (
    apply_settings,
    connection_is_configured,
    disabled_functions,
    read_host_json,
    read_local_settings,
)
from devhost.sources import EventSource, pump
from devhost.timers import TimerRunner

log = logging.getLogger("devhost")

# The triggers an AzureWebJobs.<name>.Disabled setting switches off here.
TRIGGERS_A_SETTING_DISABLES = frozenset({"eventHubTrigger", "timerTrigger", "httpTrigger"})

FUNCTION_KEY_SETTING = "DEVHOST_FUNCTION_KEY"
MASTER_KEY_SETTING = "DEVHOST_MASTER_KEY"


@dataclass
class Feed:
    """A source publishing into a hub at ``rate`` events per second (``None``: as fast as
    the listeners keep up)."""

    source: EventSource
    hub: str = "ticks"
    rate: float | None = None
    chunk: int = 500


@dataclass
class HostConfig:
    root: Path
    state_dir: Path
    port: int = 7071
    feeds: list[Feed] = field(default_factory=list)
    partitions: int = 4
    enable_timers: bool = True


def host_keys(environ: dict[str, str] | os._Environ[str]) -> tuple[HostKeys, bool]:
    """Keys from settings, or fresh random ones for this run (second value True)."""
    function_key = environ.get(FUNCTION_KEY_SETTING)
    master_key = environ.get(MASTER_KEY_SETTING)
    if function_key and master_key:
        return HostKeys(frozenset({function_key}), master_key), False
    return HostKeys.generate(), True


class DevHost:
    def __init__(
        self,
        config: HostConfig,
        app: func.FunctionRegister,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        keys: HostKeys | None = None,
        client_payload: Callable[[], str] | None = None,
        extra_routes: Callable[[web.Application], None] | None = None,
    ) -> None:
        self.config = config
        self.now = now
        self.client_payload = client_payload
        apply_settings(read_local_settings(config.root), os.environ)
        self.host_json = read_host_json(config.root)
        durable = self.host_json.get("extensions", {}).get("durableTask", {})
        self.hub_name = str(durable.get("hubName") or "TestHubName")
        self.index: AppIndex = index_app(app)
        self.disabled = disabled_functions(self.index.functions, os.environ)
        if self.disabled:
            log.warning(
                "disabled by their AzureWebJobs.<name>.Disabled settings: %s",
                ", ".join(sorted(self.disabled)),
            )
        kept_running = sorted(
            name
            for name in self.disabled
            if self.index.functions[name].trigger_type not in TRIGGERS_A_SETTING_DISABLES
        )
        if kept_running:
            log.warning(
                "AzureWebJobs.<name>.Disabled is set for durable functions, which devhost keeps "
                "running: %s. In Azure it stops them, and the orchestrations that call them hang "
                "or fail; remove the setting",
                ", ".join(kept_running),
            )
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="devhost-fn")
        if keys is None:
            keys, generated = host_keys(os.environ)
            if generated:
                log.warning(
                    "no %s/%s settings: generated keys for this run (see `keys` in the start-up "
                    "banner)",
                    FUNCTION_KEY_SETTING,
                    MASTER_KEY_SETTING,
                )
        self.keys = keys
        http_settings = self.host_json.get("extensions", {}).get("http", {})
        self.http = HttpHost(
            self.index,
            keys,
            route_prefix=str(http_settings.get("routePrefix", "api")),
            client_payload=client_payload,
            executor=self.executor,
            disabled=self.disabled,
        )
        self._extra_routes = extra_routes
        self.event_log = EventLog(
            config.state_dir / "eventhubs.sqlite", partition_count=config.partitions
        )
        self.listeners = self._listeners(client_payload)
        self.timers = TimerRunner(
            self.enabled_timers if config.enable_timers else [],
            now=now(),
            status_path=config.state_dir / "timers.json",
            time_zone=os.environ.get("WEBSITE_TIME_ZONE") or None,
        )
        self._tasks: list[asyncio.Task[Any]] = []
        self._feed_tasks: list[asyncio.Task[Any]] = []
        self._stopping = asyncio.Event()

    def _listeners(self, client_payload: Callable[[], str] | None) -> list[EventHubListener]:
        settings = self.host_json.get("extensions", {}).get("eventHubs", {})
        batch_size = int(settings.get("maxEventBatchSize", 100))
        default_retry = self.host_json.get("retry")
        listeners = []
        for spec in self.index.event_hubs:
            if spec.name in self.disabled:
                continue
            connection = str(spec.trigger.get("connection", ""))
            if not connection_is_configured(connection, os.environ):
                raise UnsupportedApp(
                    f"{spec.name}: connection setting {connection!r} is not set "
                    f"(a connection string, or {connection}__fullyQualifiedNamespace)"
                )
            listeners.append(
                EventHubListener(
                    spec,
                    self.event_log,
                    max_batch_size=batch_size,
                    retry=RetryPolicy.from_settings(spec.retry or default_retry),
                    now=self.now,
                    client_payload=client_payload,
                    executor=self.executor,
                )
            )
        return listeners

    @property
    def enabled_timers(self) -> list[FunctionSpec]:
        """The timer functions no ``AzureWebJobs.<name>.Disabled`` setting switches off."""
        return [spec for spec in self.index.timers if spec.name not in self.disabled]

    def application(self) -> web.Application:
        return self.http.application(self._extra_routes)

    async def _fire(self, spec: FunctionSpec, request: func.TimerRequest) -> None:
        kwargs: dict[str, Any] = {spec.trigger_param: request}
        if spec.client_param is not None:
            if self.client_payload is None:
                raise UnsupportedApp(f"{spec.name}: needs a durable client, and none is configured")
            kwargs[spec.client_param] = self.client_payload()
        try:
            await invoke(spec, kwargs, self.executor)
        except Exception:
            log.exception("timer %s failed", spec.name, extra={"function": spec.name})

    async def run_timers_once(self) -> int:
        due = self.timers.due(self.now())
        for spec, request in due:
            await self._fire(spec, request)
        return len(due)

    async def fire_timer(self, name: str) -> None:
        """Run one timer function now, whatever its schedule (like the host's
        ``POST /admin/functions/{name}``)."""
        spec = self.index.functions.get(name)
        if spec is None or spec.trigger_type != "timerTrigger":
            raise KeyError(f"no timer function {name!r}")
        await self._fire(spec, TimerRequest(past_due=False))

    async def pump_feeds_once(self, max_events: int | None = None) -> int:
        published = 0
        for feed in self.config.feeds:
            published += pump(
                feed.source,
                self.event_log,
                feed.hub,
                max_events=max_events or feed.chunk,
                now=self.now(),
            )
        return published

    async def deliver_once(self) -> int:
        delivered = 0
        for listener in self.listeners:
            delivered += await listener.poll_once()
        return delivered

    async def _timer_loop(self) -> None:
        while not self._stopping.is_set():
            await self.run_timers_once()
            wakeup = self.timers.next_wakeup()
            delay = 60.0 if wakeup is None else (wakeup - self.now()).total_seconds()
            await self._sleep(min(max(delay, 0.05), 60.0))

    def unheard_feeds(self) -> list[str]:
        """Hubs a feed publishes to that no enabled listener reads: their events would wait
        for ever, and a session on them would never drain."""
        heard = {listener.hub for listener in self.listeners}
        return sorted({feed.hub for feed in self.config.feeds} - heard)

    def _backlog(self, hub: str) -> int:
        groups = {lst.group for lst in self.listeners if lst.hub == hub} or {"$Default"}
        return max(self.event_log.pending(hub, group) for group in groups)

    async def _feed_loop(self, feed: Feed) -> None:
        """Publish until the source runs dry: paced by ``rate``, or else kept one chunk
        ahead of the slowest consumer so delivery sets the pace."""
        while not self._stopping.is_set():
            if feed.rate is None:
                if self._backlog(feed.hub) >= feed.chunk:
                    await self._sleep(0.005)
                    continue
                count = pump(
                    feed.source, self.event_log, feed.hub, max_events=feed.chunk, now=self.now()
                )
                pause = 0.0
            else:
                step = max(1, int(feed.rate / 20))
                count = pump(feed.source, self.event_log, feed.hub, max_events=step, now=self.now())
                pause = step / feed.rate
            if count == 0:
                return
            await self._sleep(pause)

    async def _listener_loop(self, listener: EventHubListener, max_wait: float) -> None:
        while not self._stopping.is_set():
            delivered = await listener.poll_once()
            if delivered == 0:
                await self._sleep(max_wait)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def start_background_loops(self) -> None:
        settings = self.host_json.get("extensions", {}).get("eventHubs", {})
        max_wait = parse_timespan(settings.get("maxWaitTime"), timedelta(seconds=1)).total_seconds()
        loop = asyncio.get_running_loop()
        if self.timers.timers:
            self._tasks.append(loop.create_task(self._timer_loop()))
        for feed in self.config.feeds:
            task = loop.create_task(self._feed_loop(feed))
            self._feed_tasks.append(task)
            self._tasks.append(task)
        for listener in self.listeners:
            self._tasks.append(loop.create_task(self._listener_loop(listener, min(max_wait, 0.2))))

    @property
    def feeds_finished(self) -> bool:
        """Every feed has published all its source holds."""
        return all(
            task.done() and not task.cancelled() and task.exception() is None
            for task in self._feed_tasks
        )

    @property
    def failed_feeds(self) -> list[BaseException]:
        """What stopped a feed before its source ran dry."""
        return [
            error
            for task in self._feed_tasks
            if task.done() and not task.cancelled()
            for error in [task.exception()]
            if error is not None
        ]

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.event_log.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
