"""Clocks for the durable engine.

Orchestrations see time only through ``OrchestratorStarted`` timestamps, and durable timers
fire when the engine's clock reaches their ``FireAt``. Tests use a :class:`VirtualClock` so
timers fire without waiting; the real host uses :class:`SystemClock`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Clock(Protocol):
    """What the engine needs from a clock."""

    @property
    def is_virtual(self) -> bool: ...

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever time jumps (a virtual clock being advanced)."""
        ...


class SystemClock:
    """Wall-clock time."""

    @property
    def is_virtual(self) -> bool:
        return False

    def now(self) -> datetime:
        return datetime.now(UTC)

    def subscribe(self, listener: Callable[[], None]) -> None:
        # Wall-clock time never jumps, so there is nothing to tell listeners.
        return None


class VirtualClock:
    """Time that moves only when told to, and never backwards."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("a virtual clock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @property
    def is_virtual(self) -> bool:
        return True

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def subscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a virtual clock cannot go backwards")
        with self._lock:
            target = self._now + delta
        return self.advance_to(target)

    def advance_to(self, moment: datetime) -> datetime:
        """Move to ``moment`` if it is later than now; an earlier moment changes nothing."""
        with self._lock:
            if moment > self._now:
                self._now = moment.astimezone(UTC)
            listeners = list(self._listeners)
            now = self._now
        for listener in listeners:
            listener()
        return now


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch: an exact, sortable key for due times."""
    return (moment - EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)
