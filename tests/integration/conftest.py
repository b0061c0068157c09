"""Protocol servers for the integration tests, started on free loopback ports and stopped
at the end of the session (see ``devhost.servers``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devhost.servers import (
    AZURITE_BLOB,
    COSMOS_CLI,
    azurite_blob_server,
    cosmos_client,
    cosmos_server,
)

__all__ = ["cosmos_client"]


@pytest.fixture(scope="session")
def cosmos_endpoint() -> Iterator[str]:
    if not COSMOS_CLI.is_file():
        pytest.fail(f"{COSMOS_CLI} is missing: `make test` installs it (npm ci)")
    with cosmos_server() as endpoint:
        yield endpoint


@pytest.fixture
def cosmos_database() -> str:
    """A database of its own for each test."""
    return f"desk-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def azurite_connection() -> Iterator[str]:
    if not AZURITE_BLOB.is_file():
        pytest.fail(f"{AZURITE_BLOB} is missing: `make test` installs it (npm ci)")
    with azurite_blob_server() as connection:
        yield connection
