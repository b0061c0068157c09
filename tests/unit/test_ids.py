"""The canonical JSON behind every deterministic id and audit hash must not move by a byte:
ids already handed to brokers and chains already stored are recomputed from it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.audit import AuditKind, next_record
from domain.ids import canonical_json, stable_id
from domain.orders import OrderIntent
from domain.strategies import Signal

TS = datetime(2026, 3, 2, 14, 30, 5, 123456, tzinfo=UTC)


def reference_json(value: Any) -> str:
    """The definition the stored hashes were made with."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


text = st.text(st.characters(codec="utf-8") | st.sampled_from('"\\\n\t\x00\x7f\u2028é☃'))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**200)
    | st.floats()
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(text, inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=3)
    ),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_is_json_dumps_with_the_canonical_options(value: Any) -> None:
    assert canonical_json(value) == reference_json(value)


@given(st.lists(json_values, max_size=4))
def test_stable_id_hashes_the_canonical_json_of_its_parts(parts: list[Any]) -> None:
    expected = hashlib.sha256(reference_json(parts).encode("utf-8")).hexdigest()
    assert stable_id("p", *parts) == f"p-{expected[:32]}"


def test_what_canonical_json_refuses_it_refuses_as_json_dumps_does() -> None:
    looped: list[Any] = []
    looped.append(looped)
    for value, error in (
        ({"when": TS}, TypeError),
        (looped, ValueError),
        ({1: 1, "a": 2}, TypeError),
    ):
        with pytest.raises(error):
            reference_json(value)
        with pytest.raises(error):
            canonical_json(value)
    # Refusing one value leaves nothing behind for the next (no stale circularity marks).
    assert canonical_json([looped[:0], {"a": [1]}]) == '[[],{"a":[1]}]'


def test_ids_and_audit_hashes_are_the_ones_stored_before() -> None:
    # Values computed by the code that wrote the books so far: a change here means stored
    # ids and chains no longer recompute.
    signal = Signal("sma_cross:AAPL:10:40", ("AAPL",), (1,), (187.35,), TS)
    assert signal.signal_id == "sig-59fb44de0becf8a6ee2c0f5f9ac55ab2"
    assert (
        OrderIntent.derive_id(signal.strategy_id, "paper", ["AAPL"], TS, [1])
        == "int-9b3ff61f55b452baadf5409d1b6b382f"
    )
    assert (
        stable_id("x", "caf\u00e9 \u2603", {"b": 1.5, "a": [None, True, -3]}, '"\\\n')
        == "x-bd12c7497c296009e52b723230e4f592"
    )
    first = next_record(
        None,
        partition="paper",
        ts_recorded=TS,
        kind=AuditKind.SIGNAL,
        event_id=signal.signal_id,
        correlation={"strategy_id": signal.strategy_id},
        payload=signal.to_dict(),
    )
    second = next_record(
        first,
        partition="paper",
        ts_recorded=TS,
        kind=AuditKind.SIGNAL,
        event_id='e\u00e9"',
        correlation={},
        payload={"\u2603": [1e300, -0.0, 2**70]},
    )
    assert first.hash == "222f07e7f07a7fbdf5edebc694bdd634b53e32f20b1b5aefd3d3fd79b402de8c"
    assert second.hash == "06753e4e6d3c3c8c711580ff23d02b665edbb1c2a55c092ef5ee9d34751c2686"
    assert second.stored_text() == (
        '{"correlation":{},"event_id":"e\u00e9\\"","kind":"signal","partition":"paper",'
        '"payload":{"\u2603":[1e+300,-0.0,1180591620717411303424]},'
        '"prev_hash":"222f07e7f07a7fbdf5edebc694bdd634b53e32f20b1b5aefd3d3fd79b402de8c",'
        '"seq":1,"ts_recorded":"2026-03-02T14:30:05.123456+00:00","v":1,'
        '"hash":"06753e4e6d3c3c8c711580ff23d02b665edbb1c2a55c092ef5ee9d34751c2686"}'
    )
