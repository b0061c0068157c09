"""The composed host: settings checks at start-up, feeds through to Event Hub triggers,
timers on start-up, and HTTP on a real socket."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from devhost.app_index import UnsupportedApp
from devhost.host import DevHost, Feed, HostConfig
from devhost.http_host import HostKeys
from devhost.server import BackgroundServer
from devhost.settings import disabled_functions
from devhost.sources import SyntheticMarket
from tests.devhost import durable_sample_app, sample_app

KEYS = HostKeys(frozenset({"k"}), "m")


def make_root(tmp_path: Path, values: dict[str, str]) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    (root / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "eventHubs": {"maxEventBatchSize": 16, "maxWaitTime": "00:00:00.05"}
                },
            }
        )
    )
    (root / "local.settings.json").write_text(json.dumps({"Values": values}))
    return root


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host copies local settings into the process environment, as the Functions host
    does; each test gets the environment back as it was."""
    for bucket in sample_app.received.values():
        bucket.clear()
    saved = dict(os.environ)
    monkeypatch.delenv("TicksConnection", raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_a_missing_connection_setting_is_refused_at_start(tmp_path: Path) -> None:
    root = make_root(tmp_path, {})
    with pytest.raises(UnsupportedApp, match="TicksConnection"):
        DevHost(HostConfig(root, tmp_path / "state"), sample_app.app, keys=KEYS)


def test_identity_based_connection_settings_are_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TicksConnection__fullyQualifiedNamespace", "ns.servicebus.windows.net")
    root = make_root(tmp_path, {})
    host = DevHost(HostConfig(root, tmp_path / "state"), sample_app.app, keys=KEYS)
    assert len(host.listeners) == 3
    asyncio.run(host.stop())


def test_a_synthetic_feed_reaches_the_trigger_in_batches_and_timers_run_on_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_root(
        tmp_path, {"TicksConnection": "Endpoint=sb://local/;UseDevelopmentEmulator=true"}
    )
    market = SyntheticMarket(["AAPL", "MSFT", "SPY"], seed=5, limit=200)
    config = HostConfig(root, tmp_path / "state", feeds=[Feed(market, hub="ticks", chunk=50)])
    host = DevHost(config, sample_app.app, keys=KEYS)

    async def scenario() -> None:
        host.start_background_loops()
        for _ in range(400):
            delivered = sum(len(b) for b in sample_app.received["many"])
            if delivered >= 200 and len(sample_app.received["one"]) >= 200:
                break
            await asyncio.sleep(0.01)
        await host.stop()

    asyncio.run(scenario())
    batches = sample_app.received["many"]
    assert sum(len(b) for b in batches) == 200
    assert max(len(b) for b in batches) <= 16
    assert len(sample_app.received["one"]) == 200
    assert sample_app.received["timer"] == [False]  # run_on_startup, not past due


def test_http_triggers_are_served_by_the_composed_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_root(tmp_path, {"TicksConnection": "x"})
    host = DevHost(
        HostConfig(root, tmp_path / "state", enable_timers=False), sample_app.app, keys=KEYS
    )
    with BackgroundServer(host.application()) as server:
        assert requests.get(f"{server.url}/api/open", timeout=5).text == "open"
        assert requests.get(f"{server.url}/api/echo/a", timeout=5).status_code == 401
        assert requests.get(f"{server.url}/api/echo/a?code=k", timeout=5).status_code == 201
    asyncio.run(host.stop())


def test_functions_disabled_by_settings_do_not_fire_and_their_events_wait(
    tmp_path: Path,
) -> None:
    # As the Functions host reads AzureWebJobs.<name>.Disabled: the trigger is not
    # listened to, so its consumer group's events stay unread until it is enabled again.
    values = {
        "TicksConnection": "x",
        "AzureWebJobs.on_ticks.Disabled": "true",
        "AzureWebJobs.every_five_minutes.Disabled": "1",
        "AzureWebJobs.echo.Disabled": "True",
        "AzureWebJobs.on_tick_one.Disabled": "false",
    }
    root = make_root(tmp_path, values)
    state = tmp_path / "state"
    host = DevHost(HostConfig(root, state), sample_app.app, keys=KEYS)
    assert host.disabled == {"on_ticks", "every_five_minutes", "echo"}
    assert {listener.spec.name for listener in host.listeners} == {"on_tick_one", "flaky"}
    assert host.timers.timers == []
    host.event_log.publish(
        "ticks", [("AAPL", b'{"n": 1}'), ("MSFT", b'{"n": 2}')], ts_enqueued=datetime.now(UTC)
    )

    async def deliver(target: DevHost) -> None:
        await target.deliver_once()
        await target.run_timers_once()
        await target.stop()

    asyncio.run(deliver(host))
    assert sample_app.received["many"] == []
    assert sample_app.received["timer"] == []
    assert len(sample_app.received["one"]) == 2  # its own setting says false

    for name in ("on_ticks", "every_five_minutes", "echo"):
        os.environ.pop(f"AzureWebJobs.{name}.Disabled")
    (root / "local.settings.json").write_text(json.dumps({"Values": {"TicksConnection": "x"}}))
    enabled = DevHost(HostConfig(root, state), sample_app.app, keys=KEYS)
    assert enabled.disabled == frozenset()
    asyncio.run(deliver(enabled))
    assert sorted(body["n"] for batch in sample_app.received["many"] for *_, body in batch) == [
        1,
        2,
    ]


def test_a_disabled_http_function_answers_only_the_master_key(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"TicksConnection": "x", "AzureWebJobs.echo.Disabled": "true"})
    host = DevHost(
        HostConfig(root, tmp_path / "state", enable_timers=False), sample_app.app, keys=KEYS
    )
    with BackgroundServer(host.application()) as server:
        assert requests.get(f"{server.url}/api/echo/a?code=k", timeout=5).status_code == 404
        assert requests.get(f"{server.url}/api/echo/a", timeout=5).status_code == 404
        assert requests.get(f"{server.url}/api/echo/a?code=m", timeout=5).status_code == 201
        assert requests.get(f"{server.url}/api/open", timeout=5).text == "open"
    asyncio.run(host.stop())


def test_the_disabled_switch_is_read_as_the_functions_host_reads_it() -> None:
    names = ["ticks", "post_order", "reconciliation", "end_of_day"]
    environ = {
        "AzureWebJobs.ticks.Disabled": "TRUE",
        "azurewebjobs.POST_ORDER.disabled": "1",  # configuration keys ignore case
        "AzureWebJobs_reconciliation_Disabled": "true",  # the form Linux allows
        "AzureWebJobs.end_of_day.Disabled": "yes",  # only true or 1 switch a function off
    }
    assert disabled_functions(names, environ) == {"ticks", "post_order", "reconciliation"}
    assert disabled_functions(names, {}) == frozenset()


def test_disabling_a_durable_function_keeps_it_running_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_root(tmp_path, {"AzureWebJobs.greeting.Disabled": "true"})
    with caplog.at_level("WARNING", logger="devhost"):
        host = DevHost(
            HostConfig(root, tmp_path / "state", enable_timers=False),
            durable_sample_app.app,
            keys=KEYS,
            client_payload=lambda: "{}",
        )
    assert host.disabled == {"greeting"}
    assert any("keeps running" in r.message and "greeting" in r.message for r in caplog.records)
    asyncio.run(host.stop())
