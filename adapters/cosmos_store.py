"""The books in Cosmos DB (NoSQL API), behind the same ports as the SQLite store.

Containers and partition keys follow the access paths:

- ``audit`` by ``/partition`` (an account's chain): appends and verification walk one
  partition. A record's id is its chain position, so two writers cannot take the same
  position; a marker document per event id, created in the same transactional batch,
  keeps an event from being recorded twice.
- ``fills`` and ``positions`` by ``/account``: the books of one account. A fill booked
  against an order's running total gets an id derived from that total, so two writers that
  read the broker at different moments cannot both book the difference; a position is
  replaced only under its ETag and remembers the executions it has applied.
- ``orders`` by ``/intent_id``: an intent's legs together; ``client_order_id`` starts with
  the intent id, so a single order is found without a cross-partition query.
- ``claims`` and ``signal_state`` by ``/key``: one document per key; a signal-state version
  is the document's ETag.

Every write that must not happen twice is a create with a fixed id (409: already done) or a
replace conditional on the ETag (412: someone else was first).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos import exceptions as cosmos_errors

from domain.audit import AuditRecord
from domain.errors import Conflict, RetryableFault, TerminalError
from domain.fills import Fill
from domain.orders import (
    TERMINAL,
    Order,
    OrderPage,
    page_after,
    page_of,
)
from domain.portfolio import Position
from domain.ports import Claim, Versioned
from domain.serde import ts_str

CONTAINERS = {
    "audit": "/partition",
    "fills": "/account",
    "positions": "/account",
    "orders": "/intent_id",
    "claims": "/key",
    "signal_state": "/key",
}
# Everything is indexed (the default); the order history's ORDER BY over two fields needs
# a composite index too.
INDEXING: dict[str, dict[str, Any]] = {
    "orders": {
        "indexingMode": "consistent",
        "includedPaths": [{"path": "/*"}],
        "compositeIndexes": [
            [
                {"path": "/ts_created", "order": "ascending"},
                {"path": "/client_order_id", "order": "ascending"},
            ]
        ],
    }
}
# How long a position remembers the executions it applied: far longer than any retry.
APPLIED_MEMORY = timedelta(days=7)
POSITION_ATTEMPTS = 20


def doc_id(*parts: str) -> str:
    """A Cosmos-safe id for any text (ids may not hold '/', '\\', '?' or '#')."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:48]


def _indexed(container: ContainerProxy) -> bool:
    """Whether the container has every composite index ``INDEXING`` asks for it."""
    name = container.id
    wanted = INDEXING.get(name, {}).get("compositeIndexes", [])
    policy = container.read().get("indexingPolicy") or {}

    def key(index: list[dict[str, str]]) -> tuple[tuple[str, str], ...]:
        return tuple((part["path"], part.get("order", "ascending")) for part in index)

    have = {key(index) for index in policy.get("compositeIndexes") or []}
    return all(key(index) in have for index in wanted)


def _faults(error: Any) -> Exception:
    """429 and 503 are worth retrying; the rest is final."""
    status = error.status_code
    if status in (408, 429, 449, 503):
        retry_after = None
        headers = getattr(error, "headers", None) or {}
        hint = headers.get("x-ms-retry-after-ms")
        if hint is not None:
            retry_after = float(hint) / 1000
        return RetryableFault(f"Cosmos DB {status}: {error.message}", retry_after_s=retry_after)
    return TerminalError(f"Cosmos DB {status}: {error.message}")


class CosmosStore:
    """Implements the same store ports as ``SqliteStore``."""

    def __init__(self, client: CosmosClient, database: str) -> None:
        self._client = client
        self._c: dict[str, ContainerProxy] = self._containers(client, database)

    @staticmethod
    def _containers(client: CosmosClient, database: str) -> dict[str, ContainerProxy]:
        """Create the database and containers when missing, and give an existing container
        the indexes its queries need. An identity with data-plane roles only may do neither
        (403): then they must exist already, indexes included, and a missing index is said
        at start-up rather than by a failing query later."""
        try:
            db = client.create_database_if_not_exists(database)
            containers = {
                name: db.create_container_if_not_exists(
                    name,
                    partition_key=PartitionKey(path=path),
                    indexing_policy=INDEXING.get(name),
                )
                for name, path in CONTAINERS.items()
            }
        except cosmos_errors.CosmosHttpResponseError as error:
            if error.status_code != 403:
                raise _faults(error) from error
            existing = client.get_database_client(database)
            containers = {name: existing.get_container_client(name) for name in CONTAINERS}
            for name in INDEXING:
                if not _indexed(containers[name]):
                    raise TerminalError(
                        f"Cosmos container {name!r} lacks the composite index its queries "
                        f"need: {INDEXING[name]['compositeIndexes']}"
                    ) from error
            return containers
        for name, policy in INDEXING.items():
            if not _indexed(containers[name]):
                db.replace_container(
                    name, partition_key=PartitionKey(path=CONTAINERS[name]), indexing_policy=policy
                )
        return containers

    def close(self) -> None:
        self._client.close()

    # -- helpers -----------------------------------------------------------------------------

    def _query(self, container: str, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        params = [{"name": f"@{k}", "value": v} for k, v in parameters.items()]
        try:
            return list(
                self._c[container].query_items(
                    sql, parameters=params, enable_cross_partition_query=True
                )
            )
        except cosmos_errors.CosmosHttpResponseError as error:
            raise _faults(error) from error

    def _create(self, container: str, item: dict[str, Any]) -> bool:
        """False when the id is taken."""
        try:
            self._c[container].create_item(item)
        except cosmos_errors.CosmosResourceExistsError:
            return False
        except cosmos_errors.CosmosHttpResponseError as error:
            raise _faults(error) from error
        return True

    def _replace(self, container: str, item: dict[str, Any], etag: str) -> str:
        """The new ETag; ``Conflict`` when the document changed since ``etag``."""
        try:
            written = self._c[container].replace_item(
                item["id"], item, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except cosmos_errors.CosmosAccessConditionFailedError as error:
            raise Conflict(f"{container}/{item['id']} changed") from error
        except cosmos_errors.CosmosHttpResponseError as error:
            raise _faults(error) from error
        return str(written["_etag"])

    def _by_id(self, container: str, pk_field: str, pk: str, item_id: str) -> dict[str, Any] | None:
        found = self._query(
            container,
            f"SELECT * FROM c WHERE c.{pk_field} = @pk AND c.id = @id",
            pk=pk,
            id=item_id,
        )
        return found[0] if found else None

    # -- audit -------------------------------------------------------------------------------

    @staticmethod
    def _record(record: AuditRecord) -> dict[str, Any]:
        return {
            "id": f"{record.seq:012d}",
            "type": "record",
            "partition": record.partition,
            "seq": record.seq,
            "event_id": record.event_id,
            "body": record.stored_text(),
        }

    def head(self, partition: str) -> AuditRecord | None:
        found = self._query(
            "audit",
            "SELECT TOP 1 * FROM c WHERE c.partition = @p AND c.type = 'record' "
            "ORDER BY c.seq DESC",
            p=partition,
        )
        return None if not found else AuditRecord.from_dict(json.loads(found[0]["body"]))

    def insert(self, record: AuditRecord) -> bool:
        return self.insert_many([record])

    def insert_many(self, records: Sequence[AuditRecord]) -> bool:
        """In order, each record with its event marker in one transactional batch; False
        at the first position (or event) already taken: the records before it stay."""
        container = self._c["audit"]
        for record in records:
            marker = {
                "id": doc_id("event", record.event_id),
                "type": "event",
                "partition": record.partition,
                "event_id": record.event_id,
                "seq": record.seq,
            }
            try:
                container.execute_item_batch(
                    [("create", (self._record(record),)), ("create", (marker,))],
                    partition_key=record.partition,
                )
            except (
                cosmos_errors.CosmosBatchOperationError,
                cosmos_errors.CosmosHttpResponseError,
            ) as error:
                if error.status_code == 409:  # the position, or the event, is taken
                    return False
                raise _faults(error) from error
        return True

    def find_event(self, partition: str, event_id: str) -> AuditRecord | None:
        found = self._query(
            "audit",
            "SELECT * FROM c WHERE c.partition = @p AND c.type = 'record' AND c.event_id = @e",
            p=partition,
            e=event_id,
        )
        return None if not found else AuditRecord.from_dict(json.loads(found[0]["body"]))

    def find_events(self, partition: str, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        found = self._query(
            "audit",
            "SELECT c.event_id FROM c WHERE c.partition = @p AND c.type = 'record' "
            "AND ARRAY_CONTAINS(@ids, c.event_id)",
            p=partition,
            ids=list(event_ids),
        )
        return {row["event_id"] for row in found}

    def records(
        self, partition: str, *, from_seq: int = 0, limit: int | None = None
    ) -> list[AuditRecord]:
        top = "" if limit is None else f"TOP {int(limit)} "
        found = self._query(
            "audit",
            f"SELECT {top}* FROM c WHERE c.partition = @p AND c.type = 'record' "
            "AND c.seq >= @s ORDER BY c.seq",
            p=partition,
            s=from_seq,
        )
        return [AuditRecord.from_dict(json.loads(row["body"])) for row in found]

    # -- fills and positions -----------------------------------------------------------------

    @staticmethod
    def _fill(fill: Fill) -> dict[str, Any]:
        return {
            "id": doc_id("execution", fill.execution_id),
            "type": "fill",
            "account": fill.account,
            "execution_id": fill.execution_id,
            "client_order_id": fill.client_order_id,
            "symbol": fill.symbol,
            "ts_filled": ts_str(fill.ts_filled),
            "body": fill.to_dict(),
            "applied": False,
        }

    def _fills(self, rows: Iterable[dict[str, Any]]) -> list[Fill]:
        return [Fill.from_dict(row["body"]) for row in rows]

    def add_fill(self, fill: Fill) -> bool:
        return self._record_fill(fill, None)

    def _record_fill(self, fill: Fill, booked_before: Decimal | None) -> bool:
        """True when this call recorded the fill; one document per execution, as the
        SQLite store's key. With ``booked_before``, a marker for the order's running total
        goes first in the same transactional batch: two different fills cannot both follow
        one total."""
        item = self._fill(fill)
        operations: list[tuple[str, tuple[dict[str, Any]]]] = [("create", (item,))]
        if booked_before is not None:
            total = format(booked_before.normalize(), "f")
            marker = {
                "id": doc_id("order-fill", fill.client_order_id, total),
                "type": "total",
                "account": fill.account,
                "execution_id": fill.execution_id,
            }
            operations.insert(0, ("create", (marker,)))
        try:
            self._c["fills"].execute_item_batch(operations, partition_key=fill.account)
        except (
            cosmos_errors.CosmosBatchOperationError,
            cosmos_errors.CosmosHttpResponseError,
        ) as error:
            if error.status_code != 409:
                raise _faults(error) from error
        else:
            return True
        if booked_before is not None:
            taken = self._by_id("fills", "account", fill.account, operations[0][1][0]["id"])
            if taken is not None and taken["execution_id"] != fill.execution_id:
                raise Conflict(
                    f"order {fill.client_order_id}: another fill was booked at {booked_before}"
                )
        # This very fill, recorded before (its marker too, or only its marker where a batch
        # is not atomic): make sure its document exists.
        self._create("fills", item)
        return False

    def fills(self, account: str, *, symbol: str | None = None) -> list[Fill]:
        sql = "SELECT * FROM c WHERE c.account = @a AND c.type = 'fill'"
        if symbol is not None:
            return self._fills(
                self._query(
                    "fills", sql + " AND c.symbol = @s ORDER BY c.ts_filled", a=account, s=symbol
                )
            )
        return self._fills(self._query("fills", sql + " ORDER BY c.ts_filled", a=account))

    def fills_for_order(self, client_order_id: str) -> list[Fill]:
        found = self._fills(
            self._query(
                "fills",
                "SELECT * FROM c WHERE c.type = 'fill' AND c.client_order_id = @o",
                o=client_order_id,
            )
        )
        return sorted(found, key=lambda f: (f.ts_filled, f.execution_id))

    def apply_fill_to_position(
        self, fill: Fill, *, booked_before: Decimal | None = None
    ) -> Position:
        """Record the fill, then move its position exactly once. The fill document says
        when it has been applied; the position remembers the executions it applied lately,
        which covers a call that died between the two writes. Safe to call again for a fill
        already recorded: that is how a caller finishes what a failed call began."""
        self._record_fill(fill, booked_before)
        item_id = doc_id("position", fill.account, fill.symbol)
        for _ in range(POSITION_ATTEMPTS):
            record = self._by_id(
                "fills", "account", fill.account, doc_id("execution", fill.execution_id)
            )
            current = self._by_id("positions", "account", fill.account, item_id)
            position = (
                Position(fill.account, fill.symbol)
                if current is None
                else Position.from_dict(current["body"])
            )
            applied: dict[str, str] = {} if current is None else dict(current["applied"])
            if record is not None and record.get("applied"):
                return position
            if fill.execution_id not in applied:
                after = position.apply(fill)
                horizon = ts_str(datetime.now(UTC) - APPLIED_MEMORY)
                applied = {k: v for k, v in applied.items() if v >= horizon}
                applied[fill.execution_id] = ts_str(datetime.now(UTC))
                item = {
                    "id": item_id,
                    "account": fill.account,
                    "symbol": fill.symbol,
                    "body": after.to_dict(),
                    "applied": applied,
                }
                try:
                    if current is None:
                        if not self._create("positions", item):
                            continue
                    else:
                        self._replace("positions", item, current["_etag"])
                except Conflict:
                    continue
                position = after
            if record is not None:
                try:
                    self._replace("fills", {**record, "applied": True}, record["_etag"])
                except Conflict:
                    continue
            return position
        raise RetryableFault(f"position {fill.account}/{fill.symbol}: too many concurrent updates")

    def positions(self, account: str) -> list[Position]:
        found = self._query(
            "positions", "SELECT * FROM c WHERE c.account = @a ORDER BY c.symbol", a=account
        )
        return [Position.from_dict(row["body"]) for row in found]

    # -- orders ------------------------------------------------------------------------------

    @staticmethod
    def _order(order: Order) -> dict[str, Any]:
        return {
            "id": doc_id("order", order.client_order_id),
            "intent_id": order.intent_id,
            "client_order_id": order.client_order_id,
            "account": order.account,
            "ts_created": None if order.ts_created is None else ts_str(order.ts_created),
            "status": order.status.value,
            "version": order.version,
            "body": order.to_dict(),
        }

    def create_order(self, order: Order) -> bool:
        return self._create("orders", self._order(order))

    def _order_doc(self, client_order_id: str) -> dict[str, Any] | None:
        intent_id = client_order_id.split(":", 1)[0]
        return self._by_id("orders", "intent_id", intent_id, doc_id("order", client_order_id))

    def update_order(self, order: Order, *, expected_version: int) -> None:
        current = self._order_doc(order.client_order_id)
        if current is None or current["version"] != expected_version:
            raise Conflict(
                f"order {order.client_order_id} changed since version {expected_version}"
            )
        self._replace("orders", self._order(order), current["_etag"])

    def get_order(self, client_order_id: str) -> Order | None:
        found = self._order_doc(client_order_id)
        return None if found is None else Order.from_dict(found["body"])

    def orders_for_intent(self, intent_id: str) -> list[Order]:
        found = self._query(
            "orders",
            "SELECT * FROM c WHERE c.intent_id = @i ORDER BY c.client_order_id",
            i=intent_id,
        )
        return [Order.from_dict(row["body"]) for row in found]

    def order_history(
        self,
        account: str,
        ts_from: datetime,
        ts_to: datetime,
        *,
        limit: int,
        continuation: str | None = None,
    ) -> OrderPage:
        """Keyset paging on (creation time, client order id): the composite index the
        container is created with serves the ORDER BY."""
        after_ts, after_cid = page_after(continuation)
        found = self._query(
            "orders",
            f"SELECT TOP {int(limit) + 1} * FROM c WHERE c.account = @a "
            "AND c.ts_created >= @from AND c.ts_created < @to "
            "AND (c.ts_created > @ats OR (c.ts_created = @ats AND c.client_order_id > @acid)) "
            "ORDER BY c.ts_created, c.client_order_id",
            a=account,
            ats=after_ts,
            acid=after_cid,
            **{"from": ts_str(ts_from), "to": ts_str(ts_to)},
        )
        return page_of([Order.from_dict(row["body"]) for row in found], limit)

    def all_orders(self) -> list[Order]:
        found = self._query("orders", "SELECT * FROM c ORDER BY c.client_order_id")
        return [Order.from_dict(row["body"]) for row in found]

    def open_orders(self) -> list[Order]:
        found = self._query(
            "orders",
            "SELECT * FROM c WHERE NOT ARRAY_CONTAINS(@final, c.status) ORDER BY c.client_order_id",
            final=sorted(status.value for status in TERMINAL),
        )
        return [Order.from_dict(row["body"]) for row in found]

    # -- idempotency claims ------------------------------------------------------------------

    def claim(self, key: str, value: Mapping[str, Any], *, ts: datetime) -> Claim:
        item_id = doc_id("claim", key)
        item = {"id": item_id, "key": key, "value": dict(value), "ts": ts_str(ts)}
        if self._create("claims", item):
            return Claim(key, True, dict(value))
        existing = self._by_id("claims", "key", key, item_id)
        if existing is None:
            raise RetryableFault(f"claim {key!r}: taken, but not readable yet")
        return Claim(key, False, existing["value"])

    def forget_claims(self, prefix: str, *, before: datetime) -> int:
        if not prefix:
            raise ValueError("a prefix is required: claims are forgotten by kind")
        found = self._query(
            "claims",
            "SELECT c.id, c.key FROM c WHERE STARTSWITH(c.key, @prefix) AND c.ts < @before",
            prefix=prefix,
            before=ts_str(before),
        )
        forgotten = 0
        for item in found:
            try:
                self._c["claims"].delete_item(item["id"], partition_key=item["key"])
            except cosmos_errors.CosmosResourceNotFoundError:
                continue  # gone already (another instance's pass)
            except cosmos_errors.CosmosHttpResponseError as error:
                raise _faults(error) from error
            forgotten += 1
        return forgotten

    # -- signal state ------------------------------------------------------------------------

    def _state_docs(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        if not keys:
            return []
        return self._query(
            "signal_state", "SELECT * FROM c WHERE ARRAY_CONTAINS(@keys, c.key)", keys=list(keys)
        )

    def load(self, key: str) -> Versioned | None:
        return self.load_many([key]).get(key)

    def load_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        return {row["key"]: Versioned(row["value"], row["_etag"]) for row in self._state_docs(keys)}

    def versions(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        found = self._query(
            "signal_state",
            "SELECT c.key, c._etag FROM c WHERE ARRAY_CONTAINS(@keys, c.key)",
            keys=list(keys),
        )
        return {row["key"]: row["_etag"] for row in found}

    def save(self, key: str, value: Mapping[str, Any], *, expected_version: str | None) -> str:
        return self.save_many([(key, value, expected_version)])[0]

    def save_many(self, items: Sequence[tuple[str, Mapping[str, Any], str | None]]) -> list[str]:
        """Each write conditional on its version, in order. Keys live in their own
        partitions, so unlike the SQLite store this is not all-or-nothing: on ``Conflict``
        the writes before it stand (callers reload everything and replay)."""
        versions = []
        for key, value, expected_version in items:
            item_id = doc_id("state", key)
            item = {"id": item_id, "key": key, "value": dict(value)}
            if expected_version is None:
                if not self._create("signal_state", item):
                    raise Conflict(f"signal state {key!r} exists already")
                written = self._by_id("signal_state", "key", key, item_id)
                if written is None:
                    raise RetryableFault(f"signal state {key!r}: written, but not readable yet")
                versions.append(str(written["_etag"]))
            else:
                versions.append(self._replace("signal_state", item, expected_version))
        return versions
