"""Local protocol servers for development, tests and benchmarks, started on a free loopback
port: `@vercel/cosmosdb-server` speaks Cosmos DB's REST protocol, Azurite Azure Storage's
(both installed from tests/integration/servers by `npm ci`; `make test` does it)."""

from __future__ import annotations

import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ROOT / "tests" / "integration" / "servers"
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


@contextmanager
def cosmos_server() -> Iterator[str]:
    """A Cosmos DB protocol server for the duration; yields its endpoint."""
    if not COSMOS_CLI.is_file():
        raise FileNotFoundError(f"{COSMOS_CLI} is missing: run `make test` (npm ci) first")
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


def cosmos_client(endpoint: str) -> Any:
    """A client for the local server (its certificate is self-signed: not verified)."""
    from azure.cosmos import CosmosClient

    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    return CosmosClient(endpoint, credential=COSMOS_KEY, connection_verify=False)


AZURITE_BLOB = SERVERS / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
# Azurite's published development account key.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@contextmanager
def azurite_blob_server() -> Iterator[str]:
    """Azurite's Blob service, in memory, for the duration; yields a connection string."""
    if not AZURITE_BLOB.is_file():
        raise FileNotFoundError(f"{AZURITE_BLOB} is missing: run `make test` (npm ci) first")
    port = free_port()
    process = subprocess.Popen(
        [
            "node", str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(port),
            "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, process)
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
