"""Protocol servers for the integration tests, started on free loopback ports and stopped
at the end of the session: `@vercel/cosmosdb-server` for Cosmos DB (installed by
`make test` from tests/integration/servers/package.json)."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVERS = Path(__file__).resolve().parent / "servers"
COSMOS_CLI = SERVERS / "node_modules" / "@vercel" / "cosmosdb-server" / "lib" / "cli.js"
# The emulator's published key: the local server does not check it.
COSMOS_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture(scope="session")
def cosmos_endpoint() -> Iterator[str]:
    if not COSMOS_CLI.is_file():
        pytest.fail(f"{COSMOS_CLI} is missing: `make test` installs it (npm ci)")
    port = free_port()
    process = subprocess.Popen(
        ["node", str(COSMOS_CLI), "-p", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"https://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def cosmos_database() -> str:
    """A database of its own for each test."""
    return f"desk-{uuid.uuid4().hex[:12]}"


def cosmos_client(endpoint: str) -> object:
    from azure.cosmos import CosmosClient

    # The local server's certificate is self-signed: verification is off for it alone.
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    return CosmosClient(endpoint, credential=COSMOS_KEY, connection_verify=False)
