"""HTTP triggers through a real socket: routes, methods, auth levels, bodies, errors."""

from __future__ import annotations

from collections.abc import Iterator

import azure.functions as func
import pytest
import requests

from devhost.app_index import index_app
from devhost.http_host import HostKeys, HttpHost
from devhost.routes import BadRoute, compile_route
from devhost.server import BackgroundServer
from tests.devhost import sample_app

KEYS = HostKeys(frozenset({"fn-key-1"}), "master-key-1")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    host = HttpHost(index_app(sample_app.app), KEYS)
    with BackgroundServer(host.application()) as server:
        yield server.url


def test_function_route_with_key_header_passes_route_query_and_body(base_url: str) -> None:
    response = requests.post(
        f"{base_url}/api/echo/alice/3?x=1",
        data=b"hello",
        headers={"x-functions-key": "fn-key-1"},
        timeout=5,
    )
    assert response.status_code == 201
    assert response.headers["X-Echo"] == "yes"
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {
        "method": "POST",
        "route": {"name": "alice", "count": "3"},
        "query": {"x": "1"},
        "body": "hello",
    }


def test_optional_route_parameter_may_be_left_out(base_url: str) -> None:
    response = requests.get(f"{base_url}/api/echo/bob?code=fn-key-1", timeout=5)
    assert response.status_code == 201
    assert response.json()["route"] == {"name": "bob"}


def test_constraint_mismatch_is_not_found(base_url: str) -> None:
    response = requests.get(f"{base_url}/api/echo/bob/three?code=fn-key-1", timeout=5)
    assert response.status_code == 404


@pytest.mark.parametrize("key", [None, "", "wrong", "fn-key-1x"])
def test_function_route_without_a_valid_key_is_401(base_url: str, key: str | None) -> None:
    headers = {} if key is None else {"x-functions-key": key}
    response = requests.get(f"{base_url}/api/echo/bob", headers=headers, timeout=5)
    assert response.status_code == 401


def test_master_key_opens_function_and_admin_routes(base_url: str) -> None:
    headers = {"x-functions-key": "master-key-1"}
    assert requests.get(f"{base_url}/api/echo/x", headers=headers, timeout=5).status_code == 201
    assert (
        requests.post(f"{base_url}/api/admin/thing", headers=headers, timeout=5).status_code == 200
    )


def test_function_key_does_not_open_an_admin_route(base_url: str) -> None:
    response = requests.post(
        f"{base_url}/api/admin/thing", headers={"x-functions-key": "fn-key-1"}, timeout=5
    )
    assert response.status_code == 401


def test_anonymous_async_route_needs_no_key(base_url: str) -> None:
    response = requests.get(f"{base_url}/api/open", timeout=5)
    assert response.status_code == 200
    assert response.text == "open"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_unknown_route_and_wrong_method_are_404(base_url: str) -> None:
    assert requests.get(f"{base_url}/api/nothing-here", timeout=5).status_code == 404
    assert requests.delete(f"{base_url}/api/open", timeout=5).status_code == 404
    assert requests.get(f"{base_url}/open", timeout=5).status_code == 404


def test_function_that_raises_is_a_bare_500(base_url: str) -> None:
    response = requests.get(f"{base_url}/api/boom", timeout=5)
    assert response.status_code == 500
    assert "exploded" not in response.text


def test_route_templates() -> None:
    route = compile_route("orders/{id}/legs/{leg:alpha?}")
    assert route.match("api/orders/o-1/legs") == {"id": "o-1"}
    assert route.match("/api/orders/o-1/legs/tp") == {"id": "o-1", "leg": "tp"}
    assert route.match("api/orders/o-1/legs/7") is None
    assert route.match("api/orders") is None
    assert compile_route("files/{*rest}").match("api/files/a/b.txt") == {"rest": "a/b.txt"}
    assert compile_route("health", prefix="").match("health") == {}
    with pytest.raises(BadRoute):
        compile_route("x/{id:nonsense}")
    with pytest.raises(BadRoute):
        compile_route("x/a{id}")


def test_literal_routes_win_over_parameters() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="items/{id}", methods=["GET"])
    def item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("item")

    @app.route(route="items/special", methods=["GET"])
    def special(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("special")

    host = HttpHost(index_app(app), KEYS)
    found = host.find("GET", "/api/items/special")
    assert found is not None and found[0].spec.name == "special"
    found = host.find("GET", "/api/items/42")
    assert found is not None and found[0].spec.name == "item" and found[1] == {"id": "42"}
