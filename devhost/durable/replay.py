"""The Durable extension's half of an out-of-process replay.

The Python SDK replays the orchestrator against the history and returns every action it has
taken so far as one growing list (replay schema V3: ``actions[0]``, with ``WhenAll`` /
``WhenAny`` entries holding ``compoundActions``). The extension then re-issues that list
through the Durable Task Framework, one top-level action at a time, awaiting each before
issuing the next and swallowing failures (the SDK has already handled them), while the
framework replays the same history underneath. That second replay is what decides:

* sequence numbers: every issued leaf that schedules work takes the next number, depth first
  in the order of the list; retry interceptors take numbers for their timers and new
  attempts at the point in history where a failure or a retry timer lands;
* non-determinism: a scheduling event in history (TaskScheduled, TimerCreated,
  SubOrchestrationInstanceCreated, EventSent) must meet an issued action of the same kind
  and name with the same number;
* what is new: issued actions that history has not recorded yet are scheduled now;
* completion: the execution completes only when the whole list has been issued and awaited,
  so ``WhenAll`` waits for every child even after one has failed, as .NET's Task.WhenAll does.

:class:`Replay` reproduces that second replay. It can be fed incrementally (new actions,
then new events) across episodes, which keeps the cost of an episode proportional to what
is new; :meth:`Replay.can_extend` says when that is not equivalent to a full replay, and the
engine then replays from scratch.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, IntEnum
from typing import Any, Protocol

from devhost.durable import history
from devhost.durable.history import Event, EventType

_REQUEST_NAMESPACE = uuid.UUID("6d0a1e84-3c0f-4f59-9a43-5b0f3a1c2d7e")
# The extension's retry options default to no upper bound on intervals or total time.
_NO_LIMIT = timedelta.max


class ActionType(IntEnum):
    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    SCHEDULED_SIGNAL_ENTITY = 10
    WHEN_ANY = 11
    WHEN_ALL = 12


class ReplayFailure(Exception):
    """The orchestration cannot go on; the message becomes its failure reason."""


class NonDeterminismError(ReplayFailure):
    pass


class InvalidAction(ReplayFailure):
    pass


class FunctionCatalog(Protocol):
    def has_activity(self, name: str) -> bool: ...

    def has_orchestrator(self, name: str) -> bool: ...

    def has_entity(self, name: str) -> bool: ...


class WorkKind(Enum):
    ACTIVITY = "activity"
    SUB_ORCHESTRATION = "sub-orchestration"
    TIMER = "timer"
    ENTITY_CALL = "entity call"
    ENTITY_SIGNAL = "entity signal"
    EXTERNAL_EVENT = "external event"


_RECORDED_AS: dict[int, tuple[WorkKind, ...]] = {
    EventType.TASK_SCHEDULED: (WorkKind.ACTIVITY,),
    EventType.TIMER_CREATED: (WorkKind.TIMER,),
    EventType.SUB_ORCHESTRATION_INSTANCE_CREATED: (WorkKind.SUB_ORCHESTRATION,),
    EventType.EVENT_SENT: (WorkKind.ENTITY_CALL, WorkKind.ENTITY_SIGNAL),
}
_FAILURES = frozenset({EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED})
ENTITY_REQUEST_EVENT = "op"


class _Node:
    """Something the re-issued action list can await."""

    __slots__ = ("_listeners", "done", "failed")

    def __init__(self) -> None:
        self.done = False
        self.failed = False
        self._listeners: list[Callable[[], None]] = []

    def finish(self, *, failed: bool = False) -> None:
        if self.done:
            return
        self.done = True
        self.failed = failed
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener()

    def then(self, listener: Callable[[], None]) -> None:
        if self.done:
            listener()
        else:
            self._listeners.append(listener)


class Work(_Node):
    """A leaf action: one unit of scheduled work, one timer or one wait for an event."""

    __slots__ = (
        "canceled",
        "fire_at",
        "input_json",
        "kind",
        "name",
        "request_id",
        "seq",
        "target",
    )

    def __init__(
        self,
        kind: WorkKind,
        seq: int,
        name: str,
        *,
        input_json: str | None = None,
        target: str | None = None,
        fire_at: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.seq = seq
        self.name = name
        self.input_json = input_json
        self.target = target
        self.fire_at = fire_at
        self.request_id = request_id
        self.canceled = False

    def describe(self) -> str:
        if self.kind is WorkKind.TIMER:
            return f"a timer #{self.seq} firing at {self.fire_at}"
        if self.kind in (WorkKind.ENTITY_CALL, WorkKind.ENTITY_SIGNAL):
            return f"an {self.kind.value} #{self.seq} ({self.name!r} on {self.target!r})"
        article = "an" if self.kind.value[0] in "aeiou" else "a"
        return f"{article} {self.kind.value} #{self.seq} named {self.name!r}"

    def scheduled_event(self, ts: str, instance_id: str, execution_id: str) -> Event:
        """The history event that records this work as scheduled."""
        if self.kind is WorkKind.ACTIVITY:
            return history.task_scheduled(ts, self.seq, self.name, self.input_json)
        if self.kind is WorkKind.TIMER:
            assert self.fire_at is not None
            return history.timer_created(ts, self.seq, self.fire_at)
        if self.kind is WorkKind.SUB_ORCHESTRATION:
            assert self.target is not None
            return history.sub_orchestration_created(
                ts, self.seq, self.name, self.target, self.input_json
            )
        assert self.target is not None and self.request_id is not None
        request = {
            "id": self.request_id,
            "op": self.name,
            "signal": self.kind is WorkKind.ENTITY_SIGNAL,
            "input": self.input_json,
            "parent": instance_id,
            "parentExecution": execution_id,
        }
        return history.event_sent(
            ts, self.seq, self.target, ENTITY_REQUEST_EVENT, json.dumps(request)
        )


class _WhenAll(_Node):
    __slots__ = ("_pending",)

    def __init__(self, children: Sequence[_Node]) -> None:
        super().__init__()
        self._pending = len(children)
        if self._pending == 0:
            self.finish()
        for child in children:
            child.then(self._child_done)

    def _child_done(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self.finish()


class _WhenAny(_Node):
    __slots__ = ()

    def __init__(self, children: Sequence[_Node]) -> None:
        super().__init__()
        for child in children:
            child.then(self.finish)


@dataclass(frozen=True)
class RetryPolicy:
    """The framework's retry options as the Python SDK sends them (fixed interval unless a
    caller adds the optional extension fields)."""

    first_interval: timedelta
    max_attempts: int
    backoff: float = 1.0
    max_interval: timedelta = _NO_LIMIT
    timeout: timedelta = _NO_LIMIT

    @classmethod
    def from_action(cls, options: dict[str, Any]) -> RetryPolicy:
        def millis(key: str) -> timedelta:
            value = options.get(key)
            return _NO_LIMIT if value is None else timedelta(milliseconds=float(value))

        return cls(
            first_interval=timedelta(
                milliseconds=float(options["firstRetryIntervalInMilliseconds"])
            ),
            max_attempts=max(1, int(options["maxNumberOfAttempts"])),
            backoff=float(options.get("backoffCoefficient", 1.0)),
            max_interval=millis("maxRetryIntervalInMilliseconds"),
            timeout=millis("retryTimeoutInMilliseconds"),
        )

    def delay(self, attempt: int, elapsed: timedelta) -> timedelta | None:
        """The wait before the next attempt after ``attempt`` (0-based) failed, or None when
        the retry timeout has run out."""
        if self.timeout != _NO_LIMIT and elapsed >= self.timeout:
            return None
        delay = self.first_interval * (self.backoff**attempt)
        return min(delay, self.max_interval)


class _Retry(_Node):
    """The framework's retry interceptor: attempt, and after every failure wait on a retry
    timer (one follows the final failure too) before trying again while attempts remain."""

    __slots__ = ("_attempt", "_first", "_make_attempt", "_policy", "_replay")

    def __init__(self, replay: Replay, make_attempt: Callable[[], Work], policy: RetryPolicy):
        super().__init__()
        self._replay = replay
        self._make_attempt = make_attempt
        self._policy = policy
        self._attempt = 0
        self._first = replay.now
        self._start_attempt()

    def _start_attempt(self) -> None:
        self._attempt += 1
        work = self._make_attempt()
        work.then(lambda: self._attempt_done(work))

    def _attempt_done(self, work: Work) -> None:
        if not work.failed:
            self.finish()
            return
        now = self._replay.now
        delay = self._policy.delay(self._attempt - 1, now - self._first)
        if delay is None or delay <= timedelta(0):
            self.finish(failed=True)
            return
        self._replay.new_timer(now + delay).then(self._timer_fired)

    def _timer_fired(self) -> None:
        if self._attempt >= self._policy.max_attempts:
            self.finish(failed=True)
        else:
            self._start_attempt()


class Replay:
    """The extension-side replay of one execution (see the module docstring)."""

    def __init__(
        self, instance_id: str, execution_id: str, catalog: FunctionCatalog, now: datetime
    ) -> None:
        self.instance_id = instance_id
        self.execution_id = execution_id
        self._catalog = catalog
        self.now = now
        self._actions: list[dict[str, Any]] = []
        self._cursor = 0
        self._blocked: _Node | None = None
        self._started = False
        self._counter = 0
        # The sequence counter when the program last ran out of actions without waiting.
        self._idle_counter: int | None = None
        self._awaiting_record: dict[int, Work] = {}
        self._open: dict[int, Work] = {}
        self._waiters: dict[str, list[Work]] = {}
        self._buffered: dict[str, int] = {}
        self.continue_as_new: dict[str, Any] | None = None
        self.canceled_timers: list[int] = []
        self.events_fed = 0

    # -- the action list ------------------------------------------------------------------

    def can_extend(self, actions: Sequence[dict[str, Any]]) -> bool:
        """Whether feeding only the new part of ``actions`` gives the same result as a full
        replay: the list must only have grown, and if the program had run out of actions,
        nothing may have taken a sequence number since (a full replay would issue the new
        actions at that earlier point)."""
        known = len(self._actions)
        if len(actions) < known or list(actions[:known]) != self._actions:
            return False
        if len(actions) > known and self._idle_counter is not None:
            return self._idle_counter == self._counter
        return True

    def extend(self, actions: Sequence[dict[str, Any]]) -> None:
        """Append the actions past those already known."""
        new = actions[len(self._actions) :]
        if not new:
            return
        self._actions.extend(new)
        self._advance()

    @property
    def finished(self) -> bool:
        """Every action has been issued and awaited."""
        return self._started and self._blocked is None and self._cursor == len(self._actions)

    @property
    def sequence(self) -> int:
        return self._counter

    def take_sequence(self) -> int:
        seq = self._counter
        self._counter += 1
        return seq

    def new_work(self) -> list[Work]:
        """Issued work that history has not recorded yet, in sequence order."""
        return [self._awaiting_record[seq] for seq in sorted(self._awaiting_record)]

    def _advance(self) -> None:
        if not self._started:
            return
        while self._blocked is None and self._cursor < len(self._actions):
            node = self._issue(self._actions[self._cursor])
            self._cursor += 1
            if not node.done:
                self._blocked = node
                node.then(self._unblock)
        if self._blocked is None:
            if self._idle_counter is None:
                self._idle_counter = self._counter
        else:
            self._idle_counter = None

    def _unblock(self) -> None:
        self._blocked = None
        self._advance()

    # -- issuing actions ------------------------------------------------------------------

    def _issue(self, action: dict[str, Any]) -> _Node:
        kind = action.get("actionType")
        if kind == ActionType.CALL_ACTIVITY:
            return self._activity(action)
        if kind == ActionType.CALL_ACTIVITY_WITH_RETRY:
            policy = RetryPolicy.from_action(action["retryOptions"])
            return _Retry(self, lambda: self._activity(action), policy)
        if kind == ActionType.CALL_SUB_ORCHESTRATOR:
            return self._sub_orchestration(action)
        if kind == ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
            policy = RetryPolicy.from_action(action["retryOptions"])
            return _Retry(self, lambda: self._sub_orchestration(action), policy)
        if kind == ActionType.CONTINUE_AS_NEW:
            self.continue_as_new = action
            return _done()
        if kind == ActionType.CREATE_TIMER:
            timer = self.new_timer_at(str(action["fireAt"]))
            if action.get("isCanceled"):
                # The extension cancels the timer's task at once; the timer stays recorded
                # but the engine does not deliver it.
                timer.canceled = True
                self._open.pop(timer.seq, None)
                self.canceled_timers.append(timer.seq)
                timer.finish()
            return timer
        if kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            name = str(action["externalEventName"])
            waiter = Work(WorkKind.EXTERNAL_EVENT, -1, name)
            self._wait_for(name, waiter)
            return waiter
        if kind == ActionType.CALL_ENTITY:
            return self._entity(action, WorkKind.ENTITY_CALL)
        if kind == ActionType.SIGNAL_ENTITY:
            self._entity(action, WorkKind.ENTITY_SIGNAL)
            return _done()
        if kind == ActionType.WHEN_ALL:
            return _WhenAll([self._issue(child) for child in action.get("compoundActions", [])])
        if kind == ActionType.WHEN_ANY:
            children = action.get("compoundActions", [])
            if not children:
                raise InvalidAction("task_any was given no tasks to wait for")
            return _WhenAny([self._issue(child) for child in children])
        if kind == ActionType.CALL_HTTP:
            raise InvalidAction("call_http (durable HTTP) is not supported by devhost")
        raise InvalidAction(f"unsupported action type {kind!r} from the orchestrator")

    def _schedule(self, work: Work, *, awaitable: bool = True) -> Work:
        self._awaiting_record[work.seq] = work
        if awaitable:
            self._open[work.seq] = work
        return work

    def _activity(self, action: dict[str, Any]) -> Work:
        name = str(action["functionName"])
        if not self._catalog.has_activity(name):
            raise InvalidAction(
                f"The function '{name}' doesn't exist, is disabled, or is not an activity function."
            )
        return self._schedule(
            Work(WorkKind.ACTIVITY, self.take_sequence(), name, input_json=action.get("input"))
        )

    def _sub_orchestration(self, action: dict[str, Any]) -> Work:
        name = str(action["functionName"])
        if not self._catalog.has_orchestrator(name):
            raise InvalidAction(
                f"The function '{name}' doesn't exist, is disabled, "
                "or is not an orchestrator function."
            )
        seq = self.take_sequence()
        child_id = action.get("instanceId") or f"{self.execution_id}:{seq}"
        if str(child_id) == self.instance_id:
            raise InvalidAction(
                "The instance ID of a sub-orchestration must be different than the instance ID "
                "of a parent orchestration."
            )
        if str(child_id).startswith("@"):
            raise InvalidAction("Orchestration instance ids must not start with @")
        return self._schedule(
            Work(
                WorkKind.SUB_ORCHESTRATION,
                seq,
                name,
                input_json=action.get("input"),
                target=str(child_id),
            )
        )

    def _entity(self, action: dict[str, Any], kind: WorkKind) -> Work:
        target = str(action["instanceId"])
        entity_name = entity_name_of(target)
        if entity_name is None or not self._catalog.has_entity(entity_name):
            raise InvalidAction(
                f"The function '{entity_name}' doesn't exist, is disabled, "
                "or is not an entity function."
            )
        seq = self.take_sequence()
        request_id = str(
            uuid.uuid5(_REQUEST_NAMESPACE, f"{self.instance_id}\n{self.execution_id}\n{seq}")
        )
        work = Work(
            kind,
            seq,
            str(action["operation"]),
            input_json=action.get("input"),
            target=target,
            request_id=request_id,
        )
        # A call completes when its response event arrives, registered once the request is
        # recorded (so the id always comes from history).
        return self._schedule(work, awaitable=False)

    def new_timer(self, fire_at: datetime) -> Work:
        return self.new_timer_at(history.format_ts(fire_at))

    def new_timer_at(self, fire_at: str) -> Work:
        return self._schedule(Work(WorkKind.TIMER, self.take_sequence(), "", fire_at=fire_at))

    # -- external events: the extension keeps a stack of waiters and a queue of early events
    # per name, both case-insensitive.

    def _wait_for(self, name: str, waiter: Work) -> None:
        key = name.lower()
        if self._buffered.get(key):
            self._buffered[key] -= 1
            waiter.finish()
        else:
            self._waiters.setdefault(key, []).append(waiter)

    def _raise(self, name: str) -> None:
        key = name.lower()
        stack = self._waiters.get(key)
        if stack:
            waiter = stack.pop()
            if not stack:
                del self._waiters[key]
            waiter.finish()
        else:
            self._buffered[key] = self._buffered.get(key, 0) + 1

    # -- history --------------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        self.events_fed += 1
        event_type = event["EventType"]
        if event_type == EventType.ORCHESTRATOR_STARTED:
            moment = history.parse_ts(event["Timestamp"])
            if moment > self.now:
                self.now = moment
        elif event_type == EventType.EXECUTION_STARTED:
            self._started = True
            self._advance()
        elif event_type in _RECORDED_AS:
            self._match(event)
        elif event_type in history.COMPLETION_KEYS:
            work = self._open.pop(event[history.COMPLETION_KEYS[event_type]], None)
            # A completion for an unknown task is a duplicate; the framework ignores it.
            if work is not None:
                work.finish(failed=event_type in _FAILURES)
        elif event_type == EventType.EVENT_RAISED:
            self._raise(str(event.get("Name") or ""))

    def _match(self, event: Event) -> None:
        seq = int(event["EventId"])
        work = self._awaiting_record.pop(seq, None)
        recorded = history.describe(event)
        if work is None:
            raise NonDeterminismError(
                f"Non-Deterministic workflow detected: a previous execution recorded {recorded}, "
                f"but the current replay has not (yet?) scheduled anything with sequence number "
                f"{seq}. Was the orchestrator code changed, or does it depend on something other "
                "than its input and history?"
            )
        if work.kind not in _RECORDED_AS[event["EventType"]]:
            raise NonDeterminismError(
                f"Non-Deterministic workflow detected: a previous execution recorded {recorded}, "
                f"but the current replay produced {work.describe()} with this sequence number."
            )
        if work.kind in (WorkKind.ACTIVITY, WorkKind.SUB_ORCHESTRATION):
            if str(event.get("Name", "")).lower() != work.name.lower():
                raise NonDeterminismError(
                    "Non-Deterministic workflow detected: a previous execution recorded "
                    f"{recorded}, but the current replay scheduled {work.describe()} with this "
                    "sequence number."
                )
        elif work.kind is WorkKind.ENTITY_CALL:
            request = json.loads(event["Input"])
            work.request_id = str(request["id"])
            self._wait_for(work.request_id, work)


def _done() -> _Node:
    node = _Node()
    node.finish()
    return node


def entity_name_of(scheduler_id: str) -> str | None:
    """``@name@key`` -> ``name``; None if the id is not an entity id."""
    if not scheduler_id.startswith("@"):
        return None
    name, separator, _key = scheduler_id[1:].partition("@")
    return name if separator and name else None
