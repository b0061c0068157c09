"""The real DurableOrchestrationClient against devhost's Durable HTTP API, over sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devhost.app_index import index_app
from devhost.durable import DurableEngine, SystemClock
from devhost.durable_api import DurableApi, client_payload, payload_json
from devhost.http_host import HostKeys, HttpHost
from devhost.server import BackgroundServer
from tests.devhost import durable_sample_app

KEY = "system-key-1"


@dataclass
class Running:
    url: str
    engine: DurableEngine


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    path: Path = tmp_path_factory.mktemp("durable") / "durable.sqlite"
    holder: dict[str, str] = {}

    def payload() -> str:
        return client_payload(holder["url"], "TestHub", KEY)

    engine = DurableEngine(
        durable_sample_app.app,
        path,
        clock=SystemClock(),
        activity_workers=2,
        client_payload=payload,
    )
    api = DurableApi(engine, KEY, "TestHub")
    host = HttpHost(
        index_app(durable_sample_app.app), HostKeys(frozenset({"fk"}), KEY), client_payload=payload
    )
    engine.start()
    with BackgroundServer(host.application(api.add_routes)) as server:
        holder["url"] = server.url
        yield Running(server.url, engine)
    engine.close()


def poll(url: str, until: set[str], timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = requests.get(url, timeout=5).json()
        if body["runtimeStatus"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_starter_returns_check_status_urls_that_poll_to_the_output(running: Running) -> None:
    response = requests.post(f"{running.url}/api/start/greeting", json="hello", timeout=5)
    assert response.status_code == 202
    links = response.json()
    assert response.headers["Location"] == links["statusQueryGetUri"]
    assert links["statusQueryGetUri"].startswith(f"{running.url}/runtime/webhooks/durabletask/")
    assert f"code={KEY}" in links["statusQueryGetUri"]
    final = poll(links["statusQueryGetUri"], {"Completed", "Failed"})
    assert final["runtimeStatus"] == "Completed"
    assert final["output"] == "HELLO!"
    assert final["instanceId"] == links["id"]


def test_raising_an_event_through_its_url_completes_the_waiting_orchestration(
    running: Running,
) -> None:
    links = requests.post(f"{running.url}/api/start/approval", timeout=5).json()
    assert poll(links["statusQueryGetUri"], {"Running"})["runtimeStatus"] == "Running"
    status = requests.get(links["statusQueryGetUri"], timeout=5)
    assert status.status_code == 202
    send = links["sendEventPostUri"].replace("{eventName}", "decision")
    assert requests.post(send, json="approved", timeout=5).status_code == 202
    final = poll(links["statusQueryGetUri"], {"Completed"})
    assert final["output"] == {"decision": "approved"}
    assert requests.post(send, json="late", timeout=5).status_code == 410


def test_terminate_then_purge_through_the_management_urls(running: Running) -> None:
    links = requests.post(f"{running.url}/api/start/approval", timeout=5).json()
    poll(links["statusQueryGetUri"], {"Running"})
    terminate = links["terminatePostUri"].replace("{text}", "operator")
    assert requests.post(terminate, timeout=5).status_code == 202
    final = poll(links["statusQueryGetUri"], {"Terminated"})
    assert final["runtimeStatus"] == "Terminated"
    assert requests.delete(links["purgeHistoryDeleteUri"], timeout=5).json() == {
        "instancesDeleted": 1
    }
    assert requests.get(links["statusQueryGetUri"], timeout=5).status_code == 404


def test_the_public_api_requires_the_system_key(running: Running) -> None:
    links = requests.post(f"{running.url}/api/start/greeting", json="x", timeout=5).json()
    unkeyed = links["statusQueryGetUri"].split("?")[0]
    assert requests.get(unkeyed, timeout=5).status_code == 401
    assert requests.get(unkeyed + "?code=wrong", timeout=5).status_code == 401
    assert requests.get(unkeyed + f"?code={KEY}", timeout=5).status_code in (200, 202)


def test_unknown_instance_and_unknown_orchestrator(running: Running) -> None:
    base = f"{running.url}/runtime/webhooks/durabletask"
    assert requests.get(f"{base}/instances/nope?code={KEY}", timeout=5).status_code == 404
    response = requests.post(f"{base}/orchestrators/no_such?code={KEY}", json=1, timeout=5)
    assert response.status_code == 400
    assert requests.get(f"{running.url}/api/status/nope", timeout=5).json() == {
        "runtimeStatus": None
    }


def test_query_by_runtime_status(running: Running) -> None:
    links = requests.post(f"{running.url}/api/start/approval", timeout=5).json()
    poll(links["statusQueryGetUri"], {"Running"})
    base = f"{running.url}/runtime/webhooks/durabletask"
    listed = requests.get(f"{base}/instances?runtimeStatus=Running&code={KEY}", timeout=5).json()
    assert links["id"] in {row["instanceId"] for row in listed}
    assert all(row["runtimeStatus"] == "Running" for row in listed)


def test_wait_for_completion_returns_the_output_when_quick(running: Running) -> None:
    response = requests.post(f"{running.url}/api/run/greeting", json="hi", timeout=15)
    assert response.status_code == 200
    # The SDK writes a string output as the raw body, not as JSON.
    assert response.text == "HI!"


def test_entity_signal_then_read_through_the_real_client(running: Running) -> None:
    assert requests.get(f"{running.url}/api/tally/k1", timeout=5).json() == {
        "exists": False,
        "state": None,
    }
    for amount in (2, 3, 5):
        assert (
            requests.post(f"{running.url}/api/tally/k1/add", json=amount, timeout=5).status_code
            == 202
        )
    deadline = time.monotonic() + 10
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = requests.get(f"{running.url}/api/tally/k1", timeout=5).json()
        if body.get("state") == 10:
            break
        time.sleep(0.05)
    assert body == {"exists": True, "state": 10}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", None),
        ('{"a": 1}', '{"a": 1}'),  # curl sends the JSON itself
        ('"{\\"a\\": 1}"', '{"a": 1}'),  # the durable clients send JSON text as a JSON string
        ('"approved"', '"approved"'),  # a plain string stays a string
        ("7", "7"),
    ],
)
def test_payload_bodies_from_clients_and_from_curl(body: str, expected: str | None) -> None:
    assert payload_json(body) == expected


def test_a_body_that_is_not_json_is_a_400(running: Running) -> None:
    base = f"{running.url}/runtime/webhooks/durabletask"
    response = requests.post(f"{base}/orchestrators/greeting?code={KEY}", data="{nope", timeout=5)
    assert response.status_code == 400
    assert "not JSON" in response.json()["Message"]
