"""``python -m devhost``: serve the app locally, or look inside devhost's stores."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from devhost import affinity, heap, logs, worker_loop
from devhost.app_index import UnsupportedApp, load_app
from devhost.durable.clock import SystemClock, from_micros
from devhost.durable.engine import DurableEngine
from devhost.durable.history import EventType
from devhost.durable.store import Store
from devhost.durable_api import DurableApi, client_payload
from devhost.eventhub import EventLog
from devhost.host import DevHost, Feed, HostConfig
from devhost.measure import INVOCATIONS, TRADING_DAY_S
from devhost.settings import apply_settings, read_local_settings
from devhost.sources import EventSource, FileReplay, SyntheticMarket

log = logging.getLogger("devhost")

DURABLE_STORE = "durable.sqlite"
EVENT_LOG = "eventhubs.sqlite"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devhost",
        description=(
            "A local host for this Functions app: serves its HTTP triggers, fires its timers, "
            "feeds its Event Hub triggers and runs its durable orchestrations, activities and "
            "entities through the real durable SDK, with state in SQLite. For development and "
            "tests; not a production host."
        ),
    )
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="app folder (host.json, settings)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where devhost keeps its SQLite stores (default: <root>/.devhost)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = commands.add_parser(
        "start",
        help="serve the app: HTTP triggers, timers, Event Hub feeds, durable functions",
        description="Serve the app until interrupted (Ctrl+C). State survives restarts.",
    )
    start.add_argument("--app", default="function_app:app", help="module:attribute of the app")
    start.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    start.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071)")
    start.add_argument(
        "--feed",
        default="none",
        help="Event Hub source: 'none', 'synthetic', 'file:PATH' (.jsonl or .csv), or 'alpaca' "
        "(the feed bridge on Alpaca's live streams: needs ALPACA_KEY_ID and ALPACA_SECRET_KEY)",
    )
    start.add_argument("--hub", default="ticks", help="the Event Hub the feed publishes to")
    start.add_argument(
        "--symbols",
        default="AAPL,MSFT,NVDA,SPY",
        help="synthetic and alpaca feeds: comma-separated symbols",
    )
    start.add_argument("--seed", type=int, default=1, help="synthetic feed: random seed")
    start.add_argument(
        "--rate",
        type=float,
        default=None,
        help="events per second the feed publishes (default: as fast as they are consumed)",
    )
    start.add_argument(
        "--limit", type=int, default=None, help="synthetic feed: stop after this many events"
    )
    start.add_argument(
        "--market-start",
        default=None,
        help="synthetic feed: market time of the first event (ISO 8601, default 2026-03-02 14:30Z)",
    )
    start.add_argument(
        "--timers-every",
        type=float,
        default=None,
        help="fire every timer function this often (seconds) instead of on its schedule: "
        "for a synthetic session whose market time runs faster than the clock",
    )
    start.add_argument(
        "--session",
        action="store_true",
        help="run until the feed is consumed and no orchestration is left running, showing "
        "progress; then print the --report and stop (or keep serving with --serve)",
    )
    start.add_argument(
        "--serve", action="store_true", help="with --session: keep serving after the report"
    )
    start.add_argument(
        "--report", default=None, help="with --session: module:function printing a report"
    )
    start.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="with --session: seconds to wait for orchestrations once the feed is consumed",
    )
    start.add_argument("--activity-workers", type=int, default=4, help="threads running activities")
    start.add_argument(
        "--all-cores",
        action="store_true",
        help="let the host's threads run on every core (by default they share one: they take "
        "turns on Python's interpreter lock, and handing it between cores is what slows a "
        "busy session most; worker processes for CPU-bound activities use every core anyway)",
    )
    start.add_argument(
        "--trade-orchestrator",
        default="trade",
        help="the orchestration counted as trades in the run's measurement (default trade)",
    )
    start.add_argument("--no-timers", action="store_true", help="do not fire timer triggers")
    start.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    start.add_argument(
        "--plain-logs", action="store_true", help="human-readable logs instead of JSON lines"
    )

    commands.add_parser(
        "status", help="durable instances by status, Event Hub lag and failed batches"
    )
    instances = commands.add_parser("instances", help="list durable instances")
    instances.add_argument(
        "--status", action="append", help="only these runtime statuses (repeatable)"
    )
    instances.add_argument("--prefix", default=None, help="only ids starting with this")
    instances.add_argument("--top", type=int, default=50, help="at most this many (default 50)")
    history = commands.add_parser("history", help="an instance's history, one event a line")
    history.add_argument("instance_id")
    history.add_argument("--json", action="store_true", help="the raw history events as JSON")
    return parser


def make_source(args: argparse.Namespace) -> EventSource | None:
    feed: str = args.feed
    if feed in ("none", "alpaca"):
        return None
    if feed == "synthetic":
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
        market = SyntheticMarket(symbols, seed=args.seed, limit=args.limit)
        if args.market_start:
            try:
                start = datetime.fromisoformat(args.market_start.replace("Z", "+00:00"))
            except ValueError:
                raise SystemExit(f"--market-start: not ISO 8601: {args.market_start!r}") from None
            if start.tzinfo is None:
                raise SystemExit("--market-start: give a time zone (e.g. Z)")
            market.ts_start = start.astimezone(UTC)
        return market
    if feed.startswith("file:"):
        path = Path(feed.removeprefix("file:"))
        if not path.is_file():
            raise SystemExit(f"--feed: no such file: {path}")
        return FileReplay(path)
    raise SystemExit(f"--feed: expected none, synthetic, file:PATH or alpaca, got {feed!r}")


def start_live_feed(
    args: argparse.Namespace, host: DevHost, stop: asyncio.Event
) -> asyncio.Task[int] | None:
    """With ``--feed alpaca``: the feed bridge, publishing into the host's event log."""
    if args.feed != "alpaca":
        return None
    from adapters.feed_bridge.bridge import BridgeSettings, FeedBridge
    from devhost.live_feed import EventLogProducer
    from domain.errors import ValidationError

    try:
        settings = BridgeSettings.from_environ(os.environ, symbols=args.symbols)
    except ValidationError as error:
        raise SystemExit(f"--feed alpaca: {error.field}: {error.reason}") from None
    bridge = FeedBridge(settings, EventLogProducer(host.event_log))

    async def run() -> int:
        return int(await bridge.run(stop))

    return asyncio.get_running_loop().create_task(run())


async def serve(args: argparse.Namespace, state_dir: Path) -> int:
    """Serve until stopped; with ``--session``, 1 when the session did not finish (the
    drain timed out, a feed failed, or it was interrupted)."""
    root: Path = args.root.resolve()
    sys.path.insert(0, str(root))
    apply_settings(read_local_settings(root), os.environ)
    app = load_app(*args.app.split(":", 1))
    base_url = f"http://{args.host}:{args.port}"
    source = make_source(args)
    feeds = [] if source is None else [Feed(source, hub=args.hub, rate=args.rate)]
    scheduled_timers = not args.no_timers and args.timers_every is None
    config = HostConfig(
        root, state_dir, port=args.port, feeds=feeds, enable_timers=scheduled_timers
    )
    engine_holder: dict[str, DurableApi] = {}

    def payload() -> str:
        return client_payload(base_url, engine_holder["api"].hub, engine_holder["api"].key)

    cpu_bound = [
        name.strip()
        for name in os.environ.get("DEVHOST_CPU_BOUND_ACTIVITIES", "").split(",")
        if name.strip()
    ]
    engine = DurableEngine(
        app,
        state_dir / DURABLE_STORE,
        clock=SystemClock(),
        activity_workers=args.activity_workers,
        cpu_bound_activities=cpu_bound,
        process_workers=os.cpu_count() or 2,
        app_import=args.app,
        client_payload=payload,
    )
    host = DevHost(
        config,
        app,
        client_payload=payload,
        extra_routes=lambda web_app: engine_holder["api"].add_routes(web_app),
    )
    engine_holder["api"] = DurableApi(engine, host.keys.master_key, host.hub_name)
    unheard = host.unheard_feeds() if args.session else []
    if unheard:
        print(
            f"no enabled function listens to {', '.join(unheard)} (an AzureWebJobs.<name>."
            "Disabled setting?): the session could never drain",
            file=sys.stderr,
        )
        await host.stop()
        engine.close()
        return 2
    runner = web.AppRunner(host.application(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    # Everything loaded so far lives as long as the process: out of the collector's way.
    heap.freeze_startup_heap()
    engine.start()
    served_since = time.monotonic()
    host.start_background_loops()
    live_feed_stop = asyncio.Event()
    live_feed = start_live_feed(args, host, live_feed_stop)
    print(banner(host, base_url), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    helpers = []
    if args.timers_every is not None and not args.no_timers:
        helpers.append(loop.create_task(fire_timers_every(host, args.timers_every, stop)))
    status = 0
    if args.session:
        finished = await run_session(host, engine, stop, args.drain_timeout, live_feed)
        status = 0 if finished else 1
        if args.report:
            module, _, attribute = args.report.partition(":")
            report = getattr(importlib.import_module(module), attribute or "main")
            await asyncio.to_thread(report)
        if args.serve and not stop.is_set():
            print(f"serving on {base_url} until Ctrl+C", flush=True)
        else:
            stop.set()
    await stop.wait()
    for helper in helpers:
        helper.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)
    log.info("stopping")
    if live_feed is not None:  # before the host closes the event log it publishes to
        live_feed_stop.set()
        try:
            status = status or await live_feed
        except Exception:
            log.exception("the live feed failed")
            status = status or 1
    measured = write_measurement(args, host, engine, state_dir, time.monotonic() - served_since)
    if measured is not None:
        print(
            f"function executions measured: {measured} "
            f"(python -m activities.cost_cli --measured {measured})",
            flush=True,
        )
    await host.stop()
    await runner.cleanup()
    engine.close()
    worker_loop.shutdown()
    return status


MEASUREMENT = "invocations.json"


def write_measurement(
    args: argparse.Namespace,
    host: DevHost,
    engine: DurableEngine,
    state_dir: Path,
    wall_s: float,
) -> Path | None:
    """The run's function executions, for the cost model. The period is the market time a
    synthetic feed covered, or else the wall-clock time served, in trading days."""
    source = host.config.feeds[0].source if host.config.feeds else None
    if isinstance(source, SyntheticMarket) and source.limit:
        covered_s = source.limit * source.step.total_seconds()
    else:
        covered_s = wall_s
    hub_events = (
        host.event_log.count(args.hub) if source is not None or args.feed == "alpaca" else None
    )
    trades = sum(1 for s in engine.query() if s.name == args.trade_orchestrator)
    path = state_dir / MEASUREMENT
    written = INVOCATIONS.write(
        path, period_days=covered_s / TRADING_DAY_S, ticks=hub_events, trades=trades
    )
    return path if written else None


async def fire_timers_every(host: DevHost, seconds: float, stop: asyncio.Event) -> None:
    names = [spec.name for spec in host.enabled_timers]
    while not stop.is_set():
        for name in names:
            await host.fire_timer(name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)


def _progress(host: DevHost, engine: DurableEngine, started: float) -> tuple[str, int, int]:
    lag = sum(lag for _, _, lag in host.event_log.lags())
    counts = Counter(s.runtime_status.value for s in engine.query())
    running = counts.get("Running", 0) + counts.get("Pending", 0)
    done = sum(v for k, v in counts.items() if k not in ("Running", "Pending"))
    line = (
        f"[{time.monotonic() - started:6.1f}s] events not yet consumed {lag:>6} | "
        f"orchestrations running {running:>4}, finished {done:>5}"
        + (f", failed {counts['Failed']}" if counts.get("Failed") else "")
    )
    return line, lag, running


async def run_session(
    host: DevHost,
    engine: DurableEngine,
    stop: asyncio.Event,
    drain_timeout: float,
    live_feed: asyncio.Task[int] | None = None,
) -> bool:
    """Show progress until the feeds are consumed and no orchestration runs; False if the
    drain timed out or the run was interrupted. A live feed never runs dry: the session then
    lasts until it is interrupted, or the feed stops by itself (a failure)."""
    started = time.monotonic()
    drained_at: float | None = None
    live = sys.stderr.isatty()
    last_print = 0.0
    while not stop.is_set():
        line, lag, running = await asyncio.to_thread(_progress, host, engine, started)
        now = time.monotonic()
        if live:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        elif now - last_print >= 5:
            print(line, file=sys.stderr, flush=True)
            last_print = now
        failed = host.failed_feeds
        if live_feed is not None and live_feed.done():
            ended = "failed" if live_feed.exception() else f"exit status {live_feed.result()}"
            print(f"\nthe live feed stopped ({ended})", file=sys.stderr)
            return False
        if failed:
            print(f"\nthe feed failed: {failed[0]!r}", file=sys.stderr)
            return False
        if live_feed is None and host.feeds_finished and lag == 0:
            drained_at = drained_at or now
            if running == 0:
                break
            if now - drained_at > drain_timeout:
                print(f"\n{running} orchestrations still running", file=sys.stderr)
                return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)
    print(f"\r{line}" if live else line, file=sys.stderr, flush=True)
    return not stop.is_set()


def banner(host: DevHost, base_url: str) -> str:
    lines = [f"devhost serving {len(host.index.functions)} functions on {base_url}"]
    prefix = f"{host.http.route_prefix.strip('/')}/" if host.http.route_prefix.strip("/") else ""
    for route in host.http.routes:
        methods = ",".join(sorted(route.methods))
        lines.append(
            f"  {route.spec.name}: [{methods}] {base_url}/{prefix}{route.template.template}"
            f"  (auth: {route.auth_level})"
        )
    for timer in host.timers.timers:
        lines.append(f"  {timer.spec.name}: timer {timer.schedule.expression}")
    for listener in host.listeners:
        lines.append(f"  {listener.spec.name}: event hub {listener.hub} ({listener.group})")
    if host.disabled:
        lines.append(f"  disabled by settings: {', '.join(sorted(host.disabled))}")
    if not os.environ.get("DEVHOST_FUNCTION_KEY"):
        lines.append(
            f"  keys for this run: function key {next(iter(host.keys.function_keys))}, "
            f"master key {host.keys.master_key} (set DEVHOST_FUNCTION_KEY and "
            "DEVHOST_MASTER_KEY in local.settings.json to fix them)"
        )
    return "\n".join(lines)


def _when(micros: int) -> str:
    return from_micros(micros).astimezone(UTC).isoformat(timespec="milliseconds")


def show_status(state_dir: Path) -> int:
    durable = state_dir / DURABLE_STORE
    if durable.is_file():
        store = Store(durable)
        try:
            rows = store.query_instances()
            counts = Counter(row.status for row in rows)
            print(f"durable instances: {len(rows)}")
            for status, count in sorted(counts.items()):
                print(f"  {status:<16} {count}")
            print(f"pending messages: {len(store.messages())}")
            print(f"pending activities: {len(store.activities())}")
        finally:
            store.close()
    else:
        print(f"no durable store at {durable}")
    hubs = state_dir / EVENT_LOG
    if hubs.is_file():
        event_log = EventLog(hubs)
        try:
            for hub, group, lag in event_log.lags():
                print(f"event hub {hub} ({group}): {lag} events not yet checkpointed")
            for failure in event_log.failed_batches():
                print(f"failed batch: {json.dumps(failure)}")
        finally:
            event_log.close()
    return 0


def show_instances(state_dir: Path, args: argparse.Namespace) -> int:
    store = Store(state_dir / DURABLE_STORE)
    try:
        rows = store.query_instances(statuses=args.status, prefix=args.prefix, limit=args.top)
    finally:
        store.close()
    for row in rows:
        print(
            f"{row.instance_id}  {row.name}  {row.status}  created {_when(row.created_at)}  "
            f"updated {_when(row.updated_at)}"
        )
    if not rows:
        print("no instances")
    return 0


def describe(event: dict[str, Any]) -> str:
    kind = EventType(int(event["EventType"])).name
    details = [
        f"{key}={event[key]}"
        for key in ("Name", "TaskScheduledId", "TimerId", "FireAt", "InstanceId")
        if event.get(key) not in (None, "")
    ]
    for key in ("Input", "Result", "Reason"):
        if event.get(key):
            text = str(event[key])
            details.append(f"{key}={text[:80]}{'...' if len(text) > 80 else ''}")
    return f"{event.get('Timestamp', '')}  #{event.get('EventId', -1):<3} {kind}  " + " ".join(
        details
    )


def show_history(state_dir: Path, instance_id: str, as_json: bool) -> int:
    store = Store(state_dir / DURABLE_STORE)
    try:
        events = [json.loads(text) for text in store.history(instance_id)]
    finally:
        store.close()
    if not events:
        print(f"no history for {instance_id!r}", file=sys.stderr)
        return 1
    for event in events:
        print(json.dumps(event) if as_json else describe(event))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root: Path = args.root.resolve()
    state_dir: Path = (args.state_dir or root / ".devhost").resolve()
    if args.command == "start":
        # Before any thread of the host starts: the threads it starts inherit the core.
        core = None if args.all_cores else affinity.pin_to_one_core()
        logs.configure(args.log_level, json_lines=not args.plain_logs)
        if core is not None:
            print(f"devhost: threads on core {core} (--all-cores to spread them)")
        # The SDK warns whenever an external event arrives before the orchestration waits
        # for it; it keeps the event for the wait, so the warning is noise here.
        warnings.filterwarnings("ignore", message="Potential duplicate Task completion")
        try:
            return asyncio.run(serve(args, state_dir))
        except UnsupportedApp as refused:
            print(str(refused), file=sys.stderr)
            return 2
    if args.command == "status":
        return show_status(state_dir)
    if args.command == "instances":
        return show_instances(state_dir, args)
    return show_history(state_dir, args.instance_id, args.json)
