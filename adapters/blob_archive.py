"""Write-once archive files in Azure Blob Storage (Azurite locally).

A blob is uploaded only if its name is free, so an archived day is never replaced; in Azure
the container also carries an immutability (WORM) policy, which the app does not set or
need. Connection by setting name: a connection string, or an account URL with the app's
identity (``DefaultAzureCredential``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from domain.errors import RetryableFault


class BlobArchive:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        with contextlib.suppress(ResourceExistsError):
            container.create_container()

    @classmethod
    def connect(
        cls,
        container: str,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
    ) -> BlobArchive:
        if connection_string:
            service = BlobServiceClient.from_connection_string(connection_string)
        elif account_url:
            service = BlobServiceClient(account_url, credential=credential)
        else:
            raise ValueError("a connection string or an account URL is needed")
        return cls(service.get_container_client(container))

    def put(self, name: str, data: bytes) -> bool:
        try:
            self._container.upload_blob(name, data, overwrite=False)
        except ResourceExistsError:
            return False
        except Exception as error:  # the SDK's transport errors: worth another try
            raise RetryableFault(f"archive {name}: {error}") from error
        return True

    def get(self, name: str) -> bytes | None:
        try:
            data: bytes = self._container.download_blob(name).readall()
        except ResourceNotFoundError:
            return None
        return data
