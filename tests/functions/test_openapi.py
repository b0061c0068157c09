"""Every route against the published OpenAPI document, with generated requests: no 500s,
status codes and bodies as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance, unsupported_method

from tests.functions.desk import FUNCTION_KEY, MASTER_KEY, Desk, make_desk
from triggers import openapi

schema = schemathesis.openapi.from_dict(openapi.document())


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    made = make_desk(tmp, strategies=[])
    made.prices("AAPL", [100.0])
    made.settle()
    yield made
    made.close()


def test_the_served_document_is_the_published_one(desk: Desk) -> None:
    served = requests.get(desk.url("openapi.json"), timeout=5)
    assert served.status_code == 200
    assert served.json() == openapi.document()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_routes_conform_to_the_document(case: schemathesis.Case[Any], desk: Desk) -> None:
    admin = case.path in ("/api/killswitch", "/api/orders/{id}/approval") or case.method == "PUT"
    key = MASTER_KEY if admin else FUNCTION_KEY
    # Business rules go beyond what a schema can say (a limit order needs a limit price, a
    # take-profit must sit above the entry), so schema-valid bodies may still be refused
    # with a 400: that check is left out. So is the 405 for undeclared methods: the
    # Functions host answers 404 when no function takes a method on a route. Every other
    # check runs, a 500 included.
    case.call_and_validate(
        base_url=desk.server.url,
        headers={"x-functions-key": key},
        excluded_checks=[positive_data_acceptance, unsupported_method],
    )
