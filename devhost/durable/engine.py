"""The durable engine: runs orchestrations, activities and entities of an unchanged
Functions app through the real ``azure-functions-durable`` SDK, the way the Durable
extension does, with everything persisted in SQLite.

How work flows
--------------
Every orchestration instance and every entity has an inbox of messages (``store.messages``).
A dispatch round takes the instances and entities that have visible messages, runs one
*episode* for each and commits everything the round produced in one transaction:

* an orchestration episode appends ``OrchestratorStarted`` and the inbox's events to the
  history, calls the SDK's handle with the whole history, checks the returned actions
  against history (:mod:`devhost.durable.replay`), records the newly scheduled work
  (TaskScheduled, TimerCreated, ...) and produces it: activity tasks, timer messages due at
  their ``FireAt``, messages to sub-orchestrations and entities;
* an entity episode runs a batch of operations through the entity handle and answers calls
  with an ``EventRaised`` message to the caller;
* finished activities are turned into TaskCompleted/TaskFailed messages in the same round, in
  the same transaction that deletes their task.

A process killed at any point loses at most the uncommitted round: on restart the store
still has every inbox message, timer and activity task, so every instance resumes; an
activity may run again (at least once, as in Azure) but its result is appended to history at
most once (message de-duplication keys, and completions for already-completed tasks are
dropped the way the framework drops them).

Policies (documented behaviour of this engine)
----------------------------------------------
* ``start_new`` with the id of an instance that is Pending, Running or ContinuedAsNew raises
  :class:`InstanceAlreadyExists`, or with ``if_exists=ExistingInstance.IGNORE`` returns the
  id and changes nothing. A finished (Completed, Failed, Terminated) instance is replaced by
  a new execution, like the extension's default ``overridableExistingInstanceStates``.
* ``raise_event`` and ``terminate`` on a finished instance raise :class:`InstanceNotRunning`;
  on an unknown one :class:`InstanceNotFound`.
* ``continue_as_new`` starts a new execution with a fresh history. Messages still waiting in
  the inbox (events raised after the episode that continued) go to the new execution; events
  already in the old history that were never awaited are dropped, as the extension does for
  Python (it cannot pass ``preserveUnprocessedEvents``).
* Termination does not run the orchestrator: the history gets ``ExecutionTerminated`` and
  ``ExecutionCompleted``; running activities finish and their results are dropped; a parent
  sees the sub-orchestration fail.
* A cancelled durable timer is never delivered, and the timers of a finished execution are
  dropped (Azure Storage would deliver them and the framework would ignore them).

Deliberately not reproduced
---------------------------
Durable HTTP (``call_http``), scheduled signals, suspend/resume, rewind, orchestration
versioning, entity locks (the Python SDK has none), large-payload blobs, partitions and
multiple hosts. Also: the first episode of a continued-as-new execution is recorded like any
first episode (the framework writes an extra OrchestratorCompleted after ExecutionStarted);
a non-deterministic episode records no new work (the framework may still send what the
replay issued); a sub-orchestration started with the id of a running instance fails the
parent's call at once; activity failure ``Details`` approximate the serialised .NET exception.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import azure.functions as func
from azure.functions._durable_functions import df_dumps

from devhost.app_index import AppIndex
from devhost.durable import history
from devhost.durable.activities import ActivityOutcome, ActivityRunner
from devhost.durable.activities import failure as activity_failure
from devhost.durable.catalog import FunctionCatalog, HandleFunction
from devhost.durable.clock import Clock, SystemClock, from_micros, to_micros
from devhost.durable.errors import (
    EngineBusy,
    FunctionNotFound,
    InstanceAlreadyExists,
    InstanceNotFound,
    InstanceNotRunning,
    InstanceStillRunning,
)
from devhost.durable.history import Event, EventType
from devhost.durable.replay import NonDeterminismError, Replay, ReplayFailure, Work, WorkKind
from devhost.durable.sdk import (
    memoize_history_timestamps,
    read_failure,
    share_executor_tuple_types,
)
from devhost.durable.status import (
    EntityRef,
    EntityStatus,
    HasNameAndKey,
    OrchestrationStatus,
    RuntimeStatus,
)
from devhost.durable.store import (
    ActivityRow,
    EntityRow,
    InstanceRow,
    MessageRow,
    Store,
    WriteBatch,
)

log = logging.getLogger("devhost.durable")

_COMPACT = (",", ":")
# What the extension sends for the Azure Storage provider: timers longer than six days are
# split by the SDK into intervals of three days.
_MAX_SHORT_TIMER = "6.00:00:00"
_LONG_TIMER_INTERVAL = "3.00:00:00"
_START, _EVENT, _TERMINATE, _OPERATION = "start", "event", "terminate", "op"

EntityLike = str | EntityRef | HasNameAndKey | tuple[str, str]
_T = TypeVar("_T")


class ExistingInstance(StrEnum):
    """What ``start_new`` does when a not-yet-finished instance already has the id."""

    REFUSE = "refuse"
    IGNORE = "ignore"


@dataclass
class EngineStats:
    """Counters for tests and measurements."""

    rounds: int = 0
    episodes: int = 0
    # Executions whose stored history was replayed from the start (after a restart, or
    # when the orchestrator's action list changed rather than grew).
    full_replays: int = 0
    # History events fed to the extension-side replay: linear in history length when
    # replays are incremental.
    replay_events: int = 0
    activities_started: int = 0
    activities_finished: int = 0
    entity_batches: int = 0
    sdk_seconds: float = 0.0
    episode_seconds: float = 0.0
    commit_seconds: float = 0.0


@dataclass(frozen=True)
class IdleReport:
    idle: bool
    rounds: int
    now: datetime


@dataclass
class _Message:
    id: int
    target: str
    due: int
    dedup: str | None
    body: dict[str, Any]


@dataclass(eq=False)
class _Instance:
    """An orchestration instance as the engine keeps it in memory while it is not finished."""

    instance_id: str
    execution_id: str
    name: str
    status: RuntimeStatus
    input_json: str | None
    output_json: str | None
    custom_status_json: str | None
    created: int
    updated: int
    parent: dict[str, Any] | None
    started: bool = False
    events: list[Event] = field(default_factory=list)
    events_json: list[str] = field(default_factory=list)
    last_ts: datetime | None = None
    closed: set[int] = field(default_factory=set)
    replay: Replay | None = None
    cancelled_timers: set[int] = field(default_factory=set)
    # Timers recorded but not yet fired: dropped when the execution ends.
    pending_timers: set[int] = field(default_factory=set)

    @classmethod
    def of_row(cls, row: InstanceRow) -> _Instance:
        """The instance as stored, before its history is read."""
        return cls(
            row.instance_id,
            row.execution_id,
            row.name,
            RuntimeStatus(row.status),
            row.input,
            row.output,
            row.custom_status,
            row.created_at,
            row.updated_at,
            None if row.parent is None else json.loads(row.parent),
        )

    def row(self) -> InstanceRow:
        return InstanceRow(
            self.instance_id,
            self.execution_id,
            self.name,
            str(self.status),
            self.input_json,
            self.output_json,
            self.custom_status_json,
            self.created,
            self.updated,
            None if self.parent is None else json.dumps(self.parent, separators=_COMPACT),
        )

    def reset_history(self) -> None:
        self.events = []
        self.events_json = []
        self.closed = set()
        self.replay = None
        self.cancelled_timers = set()
        self.pending_timers = set()


class DurableEngine:
    """Runs the app's durable functions. See the module docstring for the model.

    ``app`` is the ``FunctionApp`` (indexed once through :func:`devhost.app_index.index_app`),
    its :class:`AppIndex`, or a ready :class:`FunctionCatalog`. ``cpu_bound_activities`` run
    in a process pool whose workers import ``app_import`` (``module:attribute``);
    ``activity_workers=0`` runs activities inline (deterministic, for tests).
    """

    def __init__(
        self,
        app: func.FunctionRegister | AppIndex | FunctionCatalog,
        store_path: str | Path,
        *,
        clock: Clock | None = None,
        activity_workers: int = 4,
        cpu_bound_activities: Collection[str] = (),
        process_workers: int = 2,
        app_import: str | None = None,
        client_payload: Callable[[], str] | None = None,
        round_size: int = 128,
        entity_batch_size: int = 50,
    ) -> None:
        self.catalog = app if isinstance(app, FunctionCatalog) else FunctionCatalog.from_app(app)
        self.clock: Clock = clock or SystemClock()
        self.store = Store(store_path)
        self.stats = EngineStats()
        self._round_size = max(1, round_size)
        self._entity_batch_size = max(1, entity_batch_size)
        self._runner = ActivityRunner(
            self.catalog.activities,
            threads=activity_workers,
            cpu_bound=cpu_bound_activities,
            processes=process_workers,
            app_import=app_import,
            client_payload=client_payload,
        )
        memoize_history_timestamps()
        share_executor_tuple_types()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._kick = threading.Event()
        self.clock.subscribe(self._kick.set)
        self._inbox: dict[str, deque[_Message]] = {}
        self._ready: dict[str, None] = {}
        self._timers: list[tuple[int, int, _Message]] = []
        self._dedup: dict[str, int] = {}
        self._dropped: set[int] = set()
        self._instances: dict[str, _Instance] = {}
        self._entity_states: dict[str, str | None] = {}
        self._completions: deque[tuple[ActivityRow, ActivityOutcome]] = deque()
        self._in_flight: dict[int, ActivityRow] = {}
        self._to_dispatch: list[ActivityRow] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._recover()

    # == lifecycle ==========================================================================

    def _recover(self) -> None:
        """Load the pending work the store holds (left by a previous process, or after a
        failed commit); activities already running here are not dispatched again."""
        last_message, last_activity = self.store.max_ids()
        self._next_message_id = last_message + 1
        self._next_activity_id = last_activity + 1
        now = to_micros(self.clock.now())
        for row in self.store.messages():
            body = json.loads(row.body)
            self._enqueue(_Message(row.id, row.target, row.due, row.dedup, body), now)
        self._to_dispatch.extend(
            task for task in self.store.activities() if task.id not in self._in_flight
        )

    def _commit(self, batch: WriteBatch) -> None:
        """Commit what a client call or a shutdown drain did; should that fail, memory is
        ahead of the store (a message queued, a result taken): rebuild it from the store,
        so nothing the caller was told failed runs anyway."""
        try:
            self.store.commit(batch)
        except Exception:
            self._reload_from_store()
            raise

    def _reload_from_store(self) -> None:
        """After a failed commit the in-memory view is ahead of the store: rebuild it."""
        log.error("durable engine: a commit failed; reloading pending work from the store")
        for cache in (
            self._inbox,
            self._ready,
            self._dedup,
            self._instances,
            self._entity_states,
        ):
            cache.clear()
        self._timers.clear()
        self._dropped.clear()
        self._to_dispatch.clear()
        self._recover()

    def start(self) -> DurableEngine:
        """Run the engine on a background thread until :meth:`stop`."""
        with self._lock:
            if self._thread is not None:
                return self
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="durable-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, *, wait_for_activities: bool = True) -> None:
        """Stop the background thread. With ``wait_for_activities`` running activities finish
        and their results are committed; without, they run again after a restart."""
        thread = self._thread
        if thread is not None:
            self._stopping = True
            self._kick.set()
            thread.join(timeout=30)
            self._thread = None
        if wait_for_activities:
            deadline = time.monotonic() + 30
            while self._in_flight and time.monotonic() < deadline:
                self._kick.wait(0.05)
                self._kick.clear()
                with self._lock:
                    batch = WriteBatch()
                    self._drain_completions(batch, self.clock.now())
                    self._commit(batch)

    def close(self) -> None:
        if self._closed:
            return
        self.stop()
        self._runner.shutdown(wait=True)
        self.store.close()
        self._closed = True

    def __enter__(self) -> DurableEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # == client API =========================================================================

    def start_new(
        self,
        name: str,
        instance_id: str | None = None,
        input: Any = None,
        *,
        input_json: str | None = None,
        if_exists: ExistingInstance = ExistingInstance.REFUSE,
    ) -> str:
        """Queue a new instance (status Pending until its first episode) and return its id.

        ``input`` is any JSON-serialisable value (encoded like the SDK's client does);
        ``input_json`` is already-encoded JSON text (an HTTP body) and wins when given. Raises
        :class:`FunctionNotFound`, :class:`InstanceAlreadyExists` (see ``if_exists``) or
        ``ValueError`` for an invalid id or invalid JSON."""
        function = self._orchestrator(name)
        instance_id = instance_id or uuid.uuid4().hex
        if not instance_id or instance_id.startswith("@"):
            raise ValueError(f"invalid orchestration instance id {instance_id!r}")
        payload = _payload(input, input_json)
        with self._lock:
            existing = self.store.instance(instance_id)
            if existing is not None and not RuntimeStatus(existing.status).is_terminal:
                if if_exists is ExistingInstance.IGNORE:
                    return instance_id
                raise InstanceAlreadyExists(instance_id, existing.status)
            now = self.clock.now()
            now_us = to_micros(now)
            execution_id = uuid.uuid4().hex
            batch = WriteBatch()
            if existing is not None:
                batch.history_wipes.append(instance_id)
                self._instances.pop(instance_id, None)
            row = batch.instances[instance_id] = InstanceRow(
                instance_id,
                execution_id,
                function.name,
                str(RuntimeStatus.PENDING),
                payload,
                None,
                None,
                now_us,
                now_us,
                None,
            )
            start = {
                "k": _START,
                "exec": execution_id,
                "name": function.name,
                "input": payload,
                "parent": None,
                "ts": history.format_ts(now),
            }
            self._send(batch, instance_id, start, now_us)
            self._commit(batch)
            # What the first episode would otherwise read back from the store.
            self._instances[instance_id] = _Instance.of_row(row)
            self._changed.notify_all()
        self._kick.set()
        return instance_id

    def call_if_free(self, call: Callable[[], _T]) -> tuple[bool, _T | None]:
        """``(True, call())`` when nothing else holds the engine (no round is running), so a
        caller on an event loop can make a short call such as :meth:`start_new` in place
        instead of handing it to a thread; ``(False, None)`` at once otherwise."""
        if not self._lock.acquire(blocking=False):
            return False, None
        try:
            return True, call()
        finally:
            self._lock.release()

    def raise_event(
        self, instance_id: str, event_name: str, data: Any = None, *, data_json: str | None = None
    ) -> None:
        """Deliver an external event. Raises :class:`InstanceNotFound` or
        :class:`InstanceNotRunning` (finished instances take no events)."""
        payload = _payload(data, data_json)
        with self._lock:
            self._require_running(instance_id)
            now = self.clock.now()
            event = history.event_raised(history.format_ts(now), event_name, payload)
            batch = WriteBatch()
            self._send(
                batch, instance_id, {"k": _EVENT, "exec": None, "event": event}, to_micros(now)
            )
            self._commit(batch)
        self._kick.set()

    def terminate(self, instance_id: str, reason: str | None = None) -> None:
        """Ask a running instance to stop; it becomes Terminated with ``reason`` as output in
        its next episode. Raises :class:`InstanceNotFound` or :class:`InstanceNotRunning`."""
        with self._lock:
            self._require_running(instance_id)
            now = self.clock.now()
            body = {
                "k": _TERMINATE,
                "reason": reason,
                "ts": history.format_ts(now),
            }
            batch = WriteBatch()
            self._send(batch, instance_id, body, to_micros(now))
            self._commit(batch)
        self._kick.set()

    def purge(self, instance_id: str) -> bool:
        """Delete a finished instance and its history. False if there is no such instance."""
        with self._lock:
            row = self.store.instance(instance_id)
            if row is None:
                return False
            if not RuntimeStatus(row.status).is_terminal:
                raise InstanceStillRunning(instance_id, row.status)
            self._purge(instance_id)
            return True

    def purge_instances(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        runtime_status: Iterable[RuntimeStatus] | None = None,
    ) -> int:
        """Delete the finished instances created in the range (and with the given statuses)."""
        finished = {RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED}
        statuses = finished if runtime_status is None else finished & set(runtime_status)
        with self._lock:
            rows = self.store.query_instances(
                statuses=[str(s) for s in statuses],
                created_from=None if created_from is None else to_micros(created_from),
                created_to=None if created_to is None else to_micros(created_to),
            )
            for row in rows:
                self._purge(row.instance_id)
            return len(rows)

    def _purge(self, instance_id: str) -> None:
        batch = WriteBatch()
        batch.history_wipes.append(instance_id)
        batch.instances[instance_id] = None
        pending = self._inbox.pop(instance_id, deque())
        self._ready.pop(instance_id, None)
        for message in pending:
            self._forget(message, batch)
        self._instances.pop(instance_id, None)
        self._commit(batch)

    def get_status(
        self, instance_id: str, *, show_history: bool = False
    ) -> OrchestrationStatus | None:
        """The instance's status (None if unknown), with the current execution's history as
        DTFx event objects when asked."""
        with self._lock:
            row = self.store.instance(instance_id)
            if row is None:
                return None
            events = None
            if show_history:
                events = [json.loads(text) for text in self.store.history(instance_id)]
            return _status(row, events)

    def query(
        self,
        *,
        runtime_status: Iterable[RuntimeStatus] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        instance_id_prefix: str | None = None,
        top: int | None = None,
    ) -> list[OrchestrationStatus]:
        """Instances ordered by creation time, filtered by every criterion given."""
        with self._lock:
            rows = self.store.query_instances(
                statuses=None if runtime_status is None else [str(s) for s in runtime_status],
                created_from=None if created_from is None else to_micros(created_from),
                created_to=None if created_to is None else to_micros(created_to),
                prefix=instance_id_prefix,
                limit=top,
            )
        return [_status(row, None) for row in rows]

    def wait_for_status(
        self,
        instance_id: str,
        timeout: float,
        statuses: Collection[RuntimeStatus] = (
            RuntimeStatus.COMPLETED,
            RuntimeStatus.FAILED,
            RuntimeStatus.TERMINATED,
        ),
    ) -> OrchestrationStatus | None:
        """Block until the instance reaches one of ``statuses`` (the engine must be running in
        the background); the last status seen if the timeout passes first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                status = self.get_status(instance_id)
                remaining = deadline - time.monotonic()
                if (status is not None and status.runtime_status in statuses) or remaining <= 0:
                    return status
                self._changed.wait(min(remaining, 0.5))

    def signal_entity(
        self,
        entity: EntityLike,
        operation: str,
        input: Any = None,
        *,
        input_json: str | None = None,
    ) -> None:
        """Queue a one-way operation for an entity (``"@name@key"``, ``(name, key)``, an
        :class:`EntityRef` or the SDK's ``EntityId``). Raises :class:`FunctionNotFound` when
        the app has no entity function of that name."""
        ref = self._entity_ref(entity)
        payload = _payload(input, input_json)
        with self._lock:
            now = self.clock.now()
            body = {
                "k": _OPERATION,
                "id": str(uuid.uuid4()),
                "op": operation,
                "signal": True,
                "input": "null" if payload is None else payload,
                "parent": None,
                "pexec": None,
            }
            batch = WriteBatch()
            self._send(batch, ref.scheduler_id, body, to_micros(now))
            self._commit(batch)
        self._kick.set()

    def read_entity(self, entity: EntityLike) -> EntityStatus:
        """The entity's committed state; ``exists`` is False for one never created or deleted."""
        ref = EntityRef.of(entity)
        with self._lock:
            row = self.store.entity(ref.scheduler_id)
        if row is None:
            return EntityStatus(ref, False, None, None)
        return EntityStatus(ref, True, row.state, from_micros(row.updated_at))

    def list_entities(self, name: str | None = None) -> list[EntityStatus]:
        with self._lock:
            rows = self.store.entities(None if name is None else name.lower())
        return [
            EntityStatus(EntityRef(r.name, r.key), True, r.state, from_micros(r.updated_at))
            for r in rows
        ]

    # == running ============================================================================

    def run_until_idle(
        self,
        *,
        until: datetime | None = None,
        max_rounds: int = 100_000,
        timeout: float = 60.0,
    ) -> IdleReport:
        """Process all work in the calling thread. With a virtual clock, time jumps to the next
        timer whenever nothing else can run (never past ``until``); with the system clock it
        waits for timers. Returns when nothing is left to do now or before ``until``; raises
        :class:`EngineBusy` when ``max_rounds`` or ``timeout`` runs out first."""
        if self._thread is not None:
            raise RuntimeError("the engine is running in the background")
        deadline = time.monotonic() + timeout
        rounds = 0
        while True:
            self._kick.clear()
            if self._round():
                rounds += 1
                if rounds >= max_rounds:
                    raise EngineBusy(f"still busy after {rounds} rounds")
                continue
            if time.monotonic() > deadline:
                raise EngineBusy(f"still busy after {timeout} s")
            if self._in_flight or self._completions:
                self._kick.wait(0.05)
                continue
            due = self._next_due()
            if due is None or (until is not None and due > until):
                return IdleReport(True, rounds, self.clock.now())
            if self.clock.is_virtual:
                self._advance_clock(due)
            else:
                wait = (due - self.clock.now()).total_seconds()
                if wait > max(0.0, deadline - time.monotonic()):
                    raise EngineBusy(f"the next timer is due at {due}, past the timeout")
                self._kick.wait(max(0.0, wait))

    def _advance_clock(self, moment: datetime) -> None:
        advance = getattr(self.clock, "advance_to", None)
        if advance is None:
            raise TypeError("the engine's clock cannot be advanced")
        advance(moment)

    def _loop(self) -> None:
        while not self._stopping:
            self._kick.clear()
            try:
                # Only targets left ready by the round (its chain stopped at an activity or
                # at round_size) need another round at once: anything else that arrives
                # meanwhile kicks, and the wait below returns at once. Waiting rather than
                # running an empty round lets a just-dispatched activity start sooner.
                if self._round() and self._ready:
                    continue
            except Exception:
                log.exception("durable engine round failed")
                time.sleep(0.2)
                continue
            due = self._next_due()
            timeout = 1.0
            if due is not None and not self.clock.is_virtual:
                timeout = min(timeout, max(0.0, (due - self.clock.now()).total_seconds()))
            self._kick.wait(timeout)

    def _next_due(self) -> datetime | None:
        with self._lock:
            while self._timers and self._timers[0][1] in self._dropped:
                _, message_id, _ = heapq.heappop(self._timers)
                self._dropped.discard(message_id)
            return from_micros(self._timers[0][0]) if self._timers else None

    def step(self, *, chain: bool = False) -> bool:
        """Run one dispatch round now (no waiting, no clock changes); True if it did anything.
        Only when the engine is not running in the background. By default a step is a single
        pass: work that the round's episodes make ready waits for the next step; ``chain``
        runs it in the same round, as the background thread does (see ``_round``)."""
        if self._thread is not None:
            raise RuntimeError("the engine is running in the background")
        return self._round(chain=chain)

    def _round(self, *, chain: bool = True) -> bool:
        """One dispatch round; True if it did anything.

        A round runs passes: each pass drains finished activities, releases due timers and
        runs one episode for every target that is ready. With ``chain``, work the pass made
        ready (an entity an orchestration called, the orchestration the entity answered, a
        sub-orchestration) runs in a further pass of the same round instead of waiting for
        the next one, up to ``round_size`` episodes or until an activity is scheduled;
        everything the round did is committed once, then its activities are dispatched. A
        target runs again within a round only while it is a running orchestration or an
        entity (so no round both appends to and wipes a history, and no finished instance is
        read back from a store the round has not written yet)."""
        with self._lock:
            started = time.perf_counter()
            batch = WriteBatch()
            ran: set[str] = set()
            episodes = 0
            worked = False
            try:
                while True:
                    now = self.clock.now()
                    worked = self._drain_completions(batch, now) or worked
                    self._release_due(to_micros(now))
                    targets = list(
                        islice(
                            (t for t in self._ready if t not in ran or self._may_rerun(t)),
                            self._round_size - episodes,
                        )
                    )
                    for target in targets:
                        if target.startswith("@"):
                            self._entity_episode(target, now, batch)
                        else:
                            self._orchestration_episode(target, now, batch)
                    ran.update(targets)
                    episodes += len(targets)
                    # Activities wait for the commit: once one is scheduled, commit and
                    # send it rather than chain further.
                    if not (
                        chain and targets and episodes < self._round_size and not self._to_dispatch
                    ):
                        break
                commit_started = time.perf_counter()
                self.store.commit(batch)
            except Exception:
                # Memory is ahead of the store now; the store is the truth.
                self._reload_from_store()
                raise
            self.stats.commit_seconds += time.perf_counter() - commit_started
            dispatch, self._to_dispatch = self._to_dispatch, []
            for task in dispatch:
                self._dispatch(task)
            if episodes or worked:
                self.stats.rounds += 1
                self.stats.episode_seconds += time.perf_counter() - started
                self._changed.notify_all()
            return bool(episodes or worked or dispatch)

    def _may_rerun(self, target: str) -> bool:
        """Whether a target that already ran in this round may run again in it."""
        if target.startswith("@"):
            return True
        instance = self._instances.get(target)
        return (
            instance is not None and instance.started and instance.status is RuntimeStatus.RUNNING
        )

    # == messages ===========================================================================

    def _send(
        self,
        batch: WriteBatch,
        target: str,
        body: dict[str, Any],
        now_us: int,
        *,
        dedup: str | None = None,
        due: int | None = None,
    ) -> None:
        if dedup is not None and dedup in self._dedup:
            return
        message = _Message(
            self._next_message_id, target, now_us if due is None else due, dedup, body
        )
        self._next_message_id += 1
        batch.messages.append(
            MessageRow(
                message.id,
                target,
                message.due,
                dedup,
                json.dumps(body, separators=_COMPACT),
            )
        )
        self._enqueue(message, now_us)

    def _enqueue(self, message: _Message, now_us: int) -> None:
        if message.dedup is not None:
            self._dedup[message.dedup] = message.id
        if message.due <= now_us:
            self._inbox.setdefault(message.target, deque()).append(message)
            self._ready[message.target] = None
        else:
            heapq.heappush(self._timers, (message.due, message.id, message))

    def _release_due(self, now_us: int) -> None:
        while self._timers and self._timers[0][0] <= now_us:
            _, message_id, message = heapq.heappop(self._timers)
            if message_id in self._dropped:
                self._dropped.discard(message_id)
                continue
            self._inbox.setdefault(message.target, deque()).append(message)
            self._ready[message.target] = None

    def _take(self, target: str, limit: int | None, batch: WriteBatch) -> list[_Message]:
        inbox = self._inbox.get(target)
        taken: list[_Message] = []
        while inbox and (limit is None or len(taken) < limit):
            message = inbox.popleft()
            if message.id in self._dropped:
                self._dropped.discard(message.id)
                continue
            batch.message_deletes.append(message.id)
            if message.dedup is not None:
                self._dedup.pop(message.dedup, None)
            taken.append(message)
        if not inbox:
            self._inbox.pop(target, None)
            self._ready.pop(target, None)
        return taken

    def _forget(self, message: _Message, batch: WriteBatch) -> None:
        batch.message_deletes.append(message.id)
        if message.dedup is not None:
            self._dedup.pop(message.dedup, None)

    def _cancel_timer(self, dedup: str, batch: WriteBatch) -> None:
        message_id = self._dedup.pop(dedup, None)
        if message_id is None:
            return
        batch.message_deletes.append(message_id)
        # Skipped wherever it is now: still in the heap, or already released to the inbox.
        self._dropped.add(message_id)

    # == activities =========================================================================

    def _dispatch(self, task: ActivityRow) -> None:
        self._in_flight[task.id] = task
        self.stats.activities_started += 1

        def done(outcome: ActivityOutcome) -> None:
            self._completions.append((task, outcome))
            self._kick.set()

        try:
            self._runner.submit(task.name, task.input, done)
        except Exception as error:
            # A broken or shut-down pool: the orchestration sees the activity fail.
            done(activity_failure(task.name, error))

    def _drain_completions(self, batch: WriteBatch, now: datetime) -> bool:
        if not self._completions:
            return False
        now_us = to_micros(now)
        ts = history.format_ts(now)
        while self._completions:
            task, outcome = self._completions.popleft()
            self._in_flight.pop(task.id, None)
            self.stats.activities_finished += 1
            batch.activity_deletes.append(task.id)
            if outcome.ok:
                event = history.task_completed(ts, task.seq, outcome.result_json)
            else:
                event = history.task_failed(ts, task.seq, outcome.reason or "", outcome.details)
            self._send(
                batch,
                task.instance_id,
                {"k": _EVENT, "exec": task.execution_id, "event": event},
                now_us,
                dedup=f"done:{task.instance_id}:{task.execution_id}:{task.seq}",
            )
        return True

    # == orchestrations =====================================================================

    def _orchestrator(self, name: str) -> HandleFunction:
        function = self.catalog.orchestrators.get(name.lower())
        if function is None:
            raise FunctionNotFound("orchestrator", name)
        return function

    def _require_running(self, instance_id: str) -> None:
        row = self.store.instance(instance_id)
        if row is None:
            raise InstanceNotFound(instance_id)
        if RuntimeStatus(row.status).is_terminal:
            raise InstanceNotRunning(instance_id, row.status)

    def _load(self, instance_id: str) -> _Instance | None:
        cached = self._instances.get(instance_id)
        if cached is not None:
            return cached
        row = self.store.instance(instance_id)
        if row is None:
            return None
        instance = _Instance.of_row(row)
        if instance.status.is_terminal:
            return instance
        texts = self.store.history(instance_id)
        events = [json.loads(text) for text in texts]
        started = next((e for e in events if e["EventType"] == EventType.EXECUTION_STARTED), None)
        if started is not None and (
            started["OrchestrationInstance"]["ExecutionId"] == instance.execution_id
        ):
            instance.started = True
            instance.events = events
            instance.events_json = texts
            for event in events:
                self._remember(instance, event)
        self._instances[instance_id] = instance
        return instance

    @staticmethod
    def _remember(instance: _Instance, event: Event) -> None:
        event_type = event["EventType"]
        if event_type == EventType.ORCHESTRATOR_STARTED:
            instance.last_ts = history.parse_ts(event["Timestamp"])
        elif event_type == EventType.TIMER_CREATED:
            instance.pending_timers.add(int(event["EventId"]))
        elif event_type in history.COMPLETION_KEYS:
            seq = int(event[history.COMPLETION_KEYS[event_type]])
            instance.closed.add(seq)
            instance.pending_timers.discard(seq)

    def _orchestration_episode(self, instance_id: str, now: datetime, batch: WriteBatch) -> None:
        messages = self._take(instance_id, None, batch)
        instance = self._load(instance_id)
        try:
            self._run_orchestration(instance_id, instance, messages, now, batch)
        except Exception as error:
            # An engine or SDK fault, not user code (that is caught inside): fail the instance
            # rather than the whole round.
            log.exception(
                "orchestration %s: episode failed", instance_id, extra={"instance_id": instance_id}
            )
            instance = self._load(instance_id)
            if instance is not None and not instance.status.is_terminal and instance.started:
                instance.replay = None
                self._finish_failed_episode(
                    instance,
                    [],
                    now,
                    batch,
                    _failed(instance, f"devhost internal error: {error!r}"),
                    None,
                )

    def _run_orchestration(
        self,
        instance_id: str,
        instance: _Instance | None,
        messages: list[_Message],
        now: datetime,
        batch: WriteBatch,
    ) -> None:
        now_us = to_micros(now)
        starting: dict[str, Any] | None = None
        for message in messages:
            if message.body["k"] == _START:
                instance, accepted = self._accept_start(
                    instance_id, instance, message.body, now_us, batch
                )
                if accepted:
                    starting = message.body
        if instance is None or instance.status.is_terminal or not instance.started:
            return
        incoming: list[Event] = []
        terminate: dict[str, Any] | None = None
        for message in messages:
            body = message.body
            kind = body["k"]
            if kind == _TERMINATE:
                terminate = terminate or body
            elif kind == _EVENT:
                execution = body.get("exec")
                if execution is not None and execution != instance.execution_id:
                    continue
                event = body["event"]
                key = history.COMPLETION_KEYS.get(event["EventType"])
                if key is not None:
                    seq = int(event[key])
                    if seq in instance.closed:
                        continue
                    instance.closed.add(seq)
                    instance.pending_timers.discard(seq)
                incoming.append(event)
        if starting is None and not incoming and terminate is None:
            return
        self.stats.episodes += 1
        fresh: list[Event] = []
        ts_moment = max(now, instance.last_ts or now)
        for event in incoming:
            if event["EventType"] == EventType.TIMER_FIRED:
                ts_moment = max(ts_moment, history.parse_ts(event["FireAt"]))
        ts = history.format_ts(ts_moment)
        instance.last_ts = ts_moment
        fresh.append(history.orchestrator_started(ts))
        if starting is not None:
            fresh.append(
                history.execution_started(
                    starting.get("ts") or ts,
                    name=instance.name,
                    instance_id=instance_id,
                    execution_id=instance.execution_id,
                    input_json=instance.input_json,
                    parent=_parent_event_field(instance.parent),
                )
            )
        fresh.extend(incoming)
        if terminate is not None:
            self._terminate_episode(instance, fresh, ts, now_us, terminate, batch)
            return
        self._run_sdk(instance, fresh, ts, now_us, batch)

    def _accept_start(
        self,
        instance_id: str,
        instance: _Instance | None,
        body: dict[str, Any],
        now_us: int,
        batch: WriteBatch,
    ) -> tuple[_Instance | None, bool]:
        execution_id = str(body["exec"])
        if instance is not None and not instance.status.is_terminal:
            if instance.execution_id == execution_id and not instance.started:
                # Whatever history is stored belongs to an earlier execution (continued as
                # new); it may not be in memory after a restart, so always clear it.
                batch.history_wipes.append(instance_id)
                instance.reset_history()
                instance.started = True
                instance.input_json = body.get("input")
                return instance, True
            if instance.execution_id != execution_id and body.get("parent"):
                self._answer_parent(
                    body["parent"],
                    history.sub_orchestration_failed(
                        history.format_ts(from_micros(now_us)),
                        int(body["parent"]["seq"]),
                        f"An orchestration with instance ID '{instance_id}' already exists.",
                        None,
                    ),
                    now_us,
                    batch,
                )
            return instance, False
        if instance is not None and instance.execution_id == execution_id:
            return instance, False
        if instance is not None:
            batch.history_wipes.append(instance_id)
        fresh = _Instance(
            instance_id,
            execution_id,
            str(body["name"]),
            RuntimeStatus.PENDING,
            body.get("input"),
            None,
            None,
            now_us,
            now_us,
            body.get("parent"),
            started=True,
        )
        self._instances[instance_id] = fresh
        return fresh, True

    def _context_json(self, instance: _Instance, fresh_json: list[str]) -> str:
        parent = instance.parent["iid"] if instance.parent else None
        tail = json.dumps(
            {
                "input": instance.input_json,
                "instanceId": instance.instance_id,
                "isReplaying": bool(instance.events_json),
                "parentInstanceId": parent,
                "upperSchemaVersion": 1,
                "upperSchemaVersionNew": 2,
                "maximumShortTimerDuration": _MAX_SHORT_TIMER,
                "longRunningTimerIntervalDuration": _LONG_TIMER_INTERVAL,
            },
            separators=_COMPACT,
        )
        events = ",".join(instance.events_json)
        if fresh_json:
            events = events + "," + ",".join(fresh_json) if events else ",".join(fresh_json)
        return '{"history":[' + events + "]," + tail[1:]

    def _run_sdk(
        self,
        instance: _Instance,
        fresh: list[Event],
        ts: str,
        now_us: int,
        batch: WriteBatch,
    ) -> None:
        function = self.catalog.orchestrators.get(instance.name.lower())
        if function is None:
            self._finish_failed_episode(
                instance,
                fresh,
                history.parse_ts(ts),
                batch,
                _failed(
                    instance,
                    f"The function '{instance.name}' doesn't exist, is disabled, "
                    "or is not an orchestrator function.",
                ),
                None,
            )
            return
        context = self._context_json(instance, [history.dumps(e) for e in fresh])
        error: str | None = None
        details: str | None = None
        started = time.perf_counter()
        try:
            state: dict[str, Any] | None = json.loads(function.handle(context))
        except Exception as failure:
            state, error, details = read_failure(failure)
        finally:
            self.stats.sdk_seconds += time.perf_counter() - started
        moment = history.parse_ts(ts)
        if state is None:
            self._finish_failed_episode(
                instance, fresh, moment, batch, _failed(instance, error or "unknown error"), details
            )
            return
        custom = state.get("customStatus")
        if custom is not None:
            instance.custom_status_json = json.dumps(custom)
        actions = _actions_of(state)
        replay, replay_failure = self._replay(instance, actions, fresh)
        if replay_failure is not None:
            # The framework itself detects non-determinism, so its reason has no function prefix.
            reason = str(replay_failure)
            if not isinstance(replay_failure, NonDeterminismError):
                reason = _failed(instance, reason)
            self._finish_failed_episode(instance, fresh, moment, batch, reason, None)
            return
        assert replay is not None
        outcome = RuntimeStatus.RUNNING
        if replay.finished:
            if error is not None:
                outcome = RuntimeStatus.FAILED
            elif state.get("isDone"):
                outcome = (
                    RuntimeStatus.CONTINUED_AS_NEW
                    if replay.continue_as_new is not None
                    else RuntimeStatus.COMPLETED
                )
        work = replay.new_work()
        self.stats.replay_events += len(work)
        for item in work:
            event = item.scheduled_event(ts, instance.instance_id, instance.execution_id)
            replay.feed(event)
            fresh.append(event)
            self._produce(instance, item, outcome, now_us, batch)
        for seq in replay.canceled_timers:
            if seq not in instance.cancelled_timers:
                instance.cancelled_timers.add(seq)
                self._cancel_timer(_timer_key(instance, seq), batch)
        instance.updated = now_us
        if outcome is RuntimeStatus.RUNNING:
            instance.status = RuntimeStatus.RUNNING
            fresh.append(history.orchestrator_completed(ts))
            self._append(instance, fresh, batch)
            batch.instances[instance.instance_id] = instance.row()
            return
        if outcome is RuntimeStatus.FAILED:
            self._finish_failed_episode(
                instance,
                fresh,
                moment,
                batch,
                _failed(instance, error or ""),
                details,
                seq=replay.take_sequence(),
            )
            return
        if outcome is RuntimeStatus.COMPLETED:
            output = json.dumps(state.get("output"))
            fresh.append(
                history.execution_completed(ts, replay.take_sequence(), "Completed", output)
            )
            fresh.append(history.orchestrator_completed(ts))
            instance.output_json = output
            self._finish(instance, RuntimeStatus.COMPLETED, fresh, now_us, batch)
            if instance.parent is not None:
                self._answer_parent(
                    instance.parent,
                    history.sub_orchestration_completed(ts, int(instance.parent["seq"]), output),
                    now_us,
                    batch,
                )
            return
        # Continue as new: close this execution, queue the start of the next one.
        assert replay.continue_as_new is not None
        new_input = replay.continue_as_new.get("input")
        fresh.append(history.continue_as_new(ts, replay.take_sequence(), new_input))
        fresh.append(history.orchestrator_completed(ts))
        self._append(instance, fresh, batch)
        for seq in instance.pending_timers:
            self._cancel_timer(_timer_key(instance, seq), batch)
        instance.pending_timers.clear()
        instance.execution_id = uuid.uuid4().hex
        instance.input_json = new_input
        instance.status = RuntimeStatus.CONTINUED_AS_NEW
        instance.started = False
        instance.replay = None
        instance.output_json = None
        batch.instances[instance.instance_id] = instance.row()
        start = {
            "k": _START,
            "exec": instance.execution_id,
            "name": instance.name,
            "input": new_input,
            "parent": instance.parent,
            "ts": ts,
        }
        self._send(batch, instance.instance_id, start, now_us)

    def _replay(
        self, instance: _Instance, actions: list[dict[str, Any]], fresh: list[Event]
    ) -> tuple[Replay | None, ReplayFailure | None]:
        replay = instance.replay
        try:
            if replay is not None and replay.can_extend(actions):
                before = replay.events_fed
                replay.extend(actions)
                for event in fresh:
                    replay.feed(event)
                self.stats.replay_events += replay.events_fed - before
                return replay, None
            if instance.events:
                self.stats.full_replays += 1
            replay = Replay(
                instance.instance_id,
                instance.execution_id,
                self.catalog,
                from_micros(0),
            )
            instance.replay = replay
            replay.extend(actions)
            for event in instance.events:
                replay.feed(event)
            for event in fresh:
                replay.feed(event)
            self.stats.replay_events += replay.events_fed
            return replay, None
        except ReplayFailure as failure:
            instance.replay = None
            return None, failure

    def _produce(
        self,
        instance: _Instance,
        work: Work,
        outcome: RuntimeStatus,
        now_us: int,
        batch: WriteBatch,
    ) -> None:
        """Send newly recorded work where it goes. A continued-as-new execution sends no
        activity tasks or timers (the framework drops them); a finished one sends no timers."""
        key = f"{instance.instance_id}:{instance.execution_id}:{work.seq}"
        if work.kind is WorkKind.ACTIVITY:
            if outcome is RuntimeStatus.CONTINUED_AS_NEW:
                return
            task = ActivityRow(
                self._next_activity_id,
                instance.instance_id,
                instance.execution_id,
                work.seq,
                work.name,
                work.input_json,
                f"act:{key}",
            )
            self._next_activity_id += 1
            batch.activities.append(task)
            self._to_dispatch.append(task)
        elif work.kind is WorkKind.TIMER:
            if outcome is not RuntimeStatus.RUNNING or work.canceled:
                return
            assert work.fire_at is not None
            fire_at = history.parse_ts(work.fire_at)
            instance.pending_timers.add(work.seq)
            fired = history.timer_fired(work.fire_at, work.seq, work.fire_at)
            self._send(
                batch,
                instance.instance_id,
                {"k": _EVENT, "exec": instance.execution_id, "event": fired},
                now_us,
                dedup=_timer_key(instance, work.seq),
                due=to_micros(fire_at),
            )
        elif work.kind is WorkKind.SUB_ORCHESTRATION:
            assert work.target is not None
            start = {
                "k": _START,
                "exec": uuid.uuid4().hex,
                "name": self._orchestrator(work.name).name,
                "input": work.input_json,
                "parent": {
                    "iid": instance.instance_id,
                    "exec": instance.execution_id,
                    "seq": work.seq,
                    "name": instance.name,
                },
                "ts": history.format_ts(from_micros(now_us)),
            }
            self._send(batch, work.target, start, now_us, dedup=f"start:{key}")
        elif work.kind in (WorkKind.ENTITY_CALL, WorkKind.ENTITY_SIGNAL):
            assert work.target is not None
            call = work.kind is WorkKind.ENTITY_CALL
            body = {
                "k": _OPERATION,
                "id": work.request_id,
                "op": work.name,
                "signal": not call,
                "input": work.input_json if work.input_json is not None else "null",
                "parent": instance.instance_id if call else None,
                "pexec": instance.execution_id if call else None,
            }
            self._send(
                batch, EntityRef.parse(work.target).scheduler_id, body, now_us, dedup=f"op:{key}"
            )

    def _append(self, instance: _Instance, fresh: list[Event], batch: WriteBatch) -> None:
        base = len(instance.events)
        for offset, event in enumerate(fresh):
            stored = history.played(event)
            text = history.dumps(stored)
            instance.events.append(stored)
            instance.events_json.append(text)
            batch.history.append((instance.instance_id, base + offset, text))

    def _finish(
        self,
        instance: _Instance,
        status: RuntimeStatus,
        fresh: list[Event],
        now_us: int,
        batch: WriteBatch,
    ) -> None:
        self._append(instance, fresh, batch)
        instance.status = status
        instance.updated = now_us
        instance.replay = None
        batch.instances[instance.instance_id] = instance.row()
        # Finished instances leave the cache; late activity results are dropped when they
        # arrive, and timers nobody waits for any more are dropped now.
        self._instances.pop(instance.instance_id, None)
        for seq in instance.pending_timers:
            self._cancel_timer(_timer_key(instance, seq), batch)
        instance.pending_timers.clear()

    def _finish_failed_episode(
        self,
        instance: _Instance,
        fresh: list[Event],
        moment: datetime,
        batch: WriteBatch,
        reason: str,
        details: str | None,
        *,
        seq: int | None = None,
    ) -> None:
        ts = history.format_ts(moment)
        now_us = to_micros(moment)
        if not fresh:
            fresh.append(history.orchestrator_started(ts))
        if seq is None:
            seq = _next_sequence(instance.events + fresh)
        fresh.append(history.execution_completed(ts, seq, "Failed", reason, details))
        fresh.append(history.orchestrator_completed(ts))
        instance.output_json = json.dumps(reason)
        self._finish(instance, RuntimeStatus.FAILED, fresh, now_us, batch)
        if instance.parent is not None:
            self._answer_parent(
                instance.parent,
                history.sub_orchestration_failed(ts, int(instance.parent["seq"]), reason, details),
                now_us,
                batch,
            )

    def _terminate_episode(
        self,
        instance: _Instance,
        fresh: list[Event],
        ts: str,
        now_us: int,
        body: dict[str, Any],
        batch: WriteBatch,
    ) -> None:
        reason = body.get("reason")
        fresh.append(history.execution_terminated(ts, reason))
        fresh.append(
            history.execution_completed(
                ts, _next_sequence(instance.events + fresh), "Terminated", reason
            )
        )
        fresh.append(history.orchestrator_completed(ts))
        instance.output_json = None if reason is None else json.dumps(reason)
        self._finish(instance, RuntimeStatus.TERMINATED, fresh, now_us, batch)
        if instance.parent is not None:
            self._answer_parent(
                instance.parent,
                history.sub_orchestration_failed(
                    ts,
                    int(instance.parent["seq"]),
                    f"Orchestration '{instance.instance_id}' was terminated: {reason}",
                    None,
                ),
                now_us,
                batch,
            )

    def _answer_parent(
        self, parent: dict[str, Any], event: Event, now_us: int, batch: WriteBatch
    ) -> None:
        self._send(
            batch,
            str(parent["iid"]),
            {"k": _EVENT, "exec": parent["exec"], "event": event},
            now_us,
            dedup=f"done:{parent['iid']}:{parent['exec']}:{parent['seq']}",
        )

    # == entities ===========================================================================

    def _entity_ref(self, entity: EntityLike) -> EntityRef:
        ref = EntityRef.of(entity)
        if ref.name not in self.catalog.entities:
            raise FunctionNotFound("entity", ref.name)
        return ref

    def _entity_state(self, entity_id: str) -> str | None:
        if entity_id in self._entity_states:
            return self._entity_states[entity_id]
        row = self.store.entity(entity_id)
        state = None if row is None else (row.state if row.state is not None else "null")
        self._entity_states[entity_id] = state
        return state

    def _entity_episode(self, entity_id: str, now: datetime, batch: WriteBatch) -> None:
        messages = self._take(entity_id, self._entity_batch_size, batch)
        operations = [m.body for m in messages if m.body.get("k") == _OPERATION]
        if not operations:
            return
        self.stats.entity_batches += 1
        now_us = to_micros(now)
        ts = history.format_ts(now)
        ref = EntityRef.parse(entity_id)
        function = self.catalog.entities.get(ref.name)
        state = self._entity_state(entity_id)
        results: list[tuple[bool, str]]
        if function is None:
            results = [(True, json.dumps(f"no entity function named {ref.name!r}"))] * len(
                operations
            )
            exists, new_state = state is not None, state
        else:
            request = {
                "self": {"name": ref.name, "key": ref.key},
                "state": state,
                "exists": state is not None,
                "batch": [
                    {
                        "name": op["op"],
                        "signal": bool(op["signal"]),
                        "input": json.dumps(op["input"]),
                    }
                    for op in operations
                ],
            }
            started = time.perf_counter()
            try:
                response = json.loads(function.handle(json.dumps(request)))
                results = [(bool(r["isError"]), str(r["result"])) for r in response["results"]]
                exists = bool(response["entityExists"])
                new_state = response.get("entityState") if exists else None
            except Exception as error:
                log.exception(
                    "entity %s: batch failed", entity_id, extra={"instance_id": entity_id}
                )
                results = [(True, json.dumps(f"{type(error).__name__}: {error}"))] * len(operations)
                exists, new_state = state is not None, state
            finally:
                self.stats.sdk_seconds += time.perf_counter() - started
        for op, (is_error, result) in zip(operations, results, strict=False):
            if op["signal"] or not op.get("parent"):
                continue
            answer: dict[str, Any] = {"result": result}
            if is_error:
                answer["exceptionType"] = "System.Exception"
            event = history.event_raised(ts, str(op["id"]), json.dumps(answer))
            self._send(
                batch,
                str(op["parent"]),
                {"k": _EVENT, "exec": op.get("pexec"), "event": event},
                now_us,
                dedup=f"resp:{op['id']}",
            )
        stored = new_state if exists else None
        if exists and stored is None:
            stored = "null"
        self._entity_states[entity_id] = stored
        batch.entities[entity_id] = (
            EntityRow(entity_id, ref.name, ref.key, stored, now_us) if exists else None
        )


def _payload(value: Any, text: str | None) -> str | None:
    if text is not None:
        json.loads(text)
        return text
    if value is None:
        return None
    return str(df_dumps(value))


def _actions_of(state: dict[str, Any]) -> list[dict[str, Any]]:
    groups = state.get("actions") or []
    if not groups:
        return []
    if len(groups) != 1:
        raise ValueError(
            "the SDK answered with replay schema V1 (one action group per yield); "
            "devhost speaks V3 only"
        )
    return list(groups[0])


def _failed(instance: _Instance, error: str) -> str:
    """How the extension reports an orchestrator function that failed."""
    return f"Orchestrator function '{instance.name}' failed: {error}"


def _timer_key(instance: _Instance, seq: int) -> str:
    return f"timer:{instance.instance_id}:{instance.execution_id}:{seq}"


def _next_sequence(events: Iterable[Event]) -> int:
    """The number after the highest one this execution has used."""
    highest = -1
    for event in events:
        if event["EventType"] in (
            EventType.TASK_SCHEDULED,
            EventType.TIMER_CREATED,
            EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
            EventType.EVENT_SENT,
        ):
            highest = max(highest, int(event["EventId"]))
    return highest + 1


def _parent_event_field(parent: dict[str, Any] | None) -> dict[str, Any] | None:
    if parent is None:
        return None
    return {
        "OrchestrationInstance": {"InstanceId": parent["iid"], "ExecutionId": parent["exec"]},
        "Name": parent.get("name"),
        "TaskScheduleId": parent["seq"],
        "Version": "",
    }


def _status(row: InstanceRow, events: list[dict[str, Any]] | None) -> OrchestrationStatus:
    parent = json.loads(row.parent) if row.parent else None
    return OrchestrationStatus(
        instance_id=row.instance_id,
        name=row.name,
        runtime_status=RuntimeStatus(row.status),
        execution_id=row.execution_id,
        input_json=row.input,
        output_json=row.output,
        custom_status_json=row.custom_status,
        created_time=from_micros(row.created_at),
        last_updated_time=from_micros(row.updated_at),
        parent_instance_id=None if parent is None else parent["iid"],
        history=events,
    )


__all__ = ["DurableEngine", "EngineStats", "ExistingInstance", "IdleReport"]
