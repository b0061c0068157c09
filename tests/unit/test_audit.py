from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.audit import (
    GENESIS_HASH,
    AuditKind,
    AuditRecord,
    find_break,
    next_record,
    verify,
)
from domain.errors import ValidationError

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def make_chain(length: int, partition: str = "acct-1") -> list[AuditRecord]:
    records: list[AuditRecord] = []
    previous = None
    for i in range(length):
        previous = next_record(
            previous,
            partition=partition,
            ts_recorded=T0 + timedelta(seconds=i),
            kind=AuditKind.ORDER_EVENT,
            event_id=f"evt-{i}",
            correlation={"intent_id": f"int-{i // 3}"},
            payload={"i": i, "price": "101.25", "nested": {"qty": "3"}},
        )
        records.append(previous)
    return records


def test_fresh_chain_verifies_and_starts_at_genesis() -> None:
    chain = make_chain(5)
    assert verify(chain) is None
    assert chain[0].prev_hash == GENESIS_HASH
    assert [r.seq for r in chain] == [0, 1, 2, 3, 4]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))


@given(
    st.dictionaries(
        st.text(max_size=5),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=8),
        max_size=4,
    )
)
def test_a_records_stored_text_reads_back_as_the_record(payload: dict[str, object]) -> None:
    (record,) = make_chain(1)
    sealed = next_record(
        record,
        partition="acct-1",
        ts_recorded=T0,
        kind=AuditKind.SIGNAL,
        event_id='e\u00e9"',
        payload=payload,
    )
    text = sealed.stored_text()
    assert json.loads(text) == json.loads(json.dumps(sealed.to_dict()))
    assert text == replace(sealed).stored_text()  # the kept body is the body of its fields
    # A record changed after sealing stores its own fields, not the body it was sealed with.
    forged = replace(sealed, payload={"forged": True})
    assert json.loads(forged.stored_text())["payload"] == {"forged": True}
    assert verify([record, AuditRecord.from_dict(json.loads(forged.stored_text()))]) == 1


def test_editing_a_payload_is_detected_at_that_record() -> None:
    chain = make_chain(6)
    chain[3] = replace(chain[3], payload={**chain[3].payload, "price": "999"})
    assert verify(chain) == 3


def test_editing_and_resealing_a_record_breaks_the_next_link() -> None:
    chain = make_chain(6)
    chain[2] = replace(chain[2], payload={"forged": True}).sealed()
    found = find_break(chain)
    assert found is not None
    assert found.index == 3
    assert "prev_hash" in found.reason


def test_removing_a_middle_record_is_detected() -> None:
    chain = make_chain(6)
    del chain[2]
    assert verify(chain) == 2


def test_removing_the_first_record_is_detected() -> None:
    chain = make_chain(4)
    assert verify(chain[1:]) == 0


def test_cutting_the_tail_is_detected_against_the_recorded_head() -> None:
    chain = make_chain(5)
    head = chain[-1].hash
    assert verify(chain, head=head) is None
    assert verify(chain[:-1]) is None  # the records alone cannot tell
    assert verify(chain[:-1], head=head) == 4


def test_reordering_two_records_is_detected() -> None:
    chain = make_chain(6)
    chain[1], chain[4] = chain[4], chain[1]
    assert verify(chain) == 1


def test_slice_verifies_from_its_predecessor() -> None:
    chain = make_chain(10)
    assert verify(chain[5:], start=chain[4]) is None
    assert verify(chain[5:]) == 0
    assert verify(chain[6:], start=chain[4]) == 0


def test_round_trip_through_json_keeps_the_chain_valid() -> None:
    chain = make_chain(4)
    restored = [AuditRecord.from_dict(json.loads(json.dumps(r.to_dict()))) for r in chain]
    assert restored == chain
    assert verify(restored) is None


def test_record_id_is_unique_per_chain_position() -> None:
    chain = make_chain(3)
    assert [r.record_id for r in chain] == [
        "acct-1:000000000000",
        "acct-1:000000000001",
        "acct-1:000000000002",
    ]


def test_chain_refuses_to_cross_partitions() -> None:
    first = make_chain(1, partition="a")[0]
    with pytest.raises(ValidationError) as err:
        next_record(first, partition="b", ts_recorded=T0, kind=AuditKind.FILL, event_id="x")
    assert err.value.field == "partition"


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValidationError):
        next_record(
            None, partition="a", ts_recorded=datetime(2026, 1, 1), kind=AuditKind.FILL, event_id="x"
        )


def test_payload_that_is_not_json_is_refused_when_recorded() -> None:
    with pytest.raises(TypeError):
        next_record(
            None,
            partition="a",
            ts_recorded=T0,
            kind=AuditKind.FILL,
            event_id="x",
            payload={"when": datetime(2026, 1, 1)},
        )


def test_from_dict_names_the_bad_field() -> None:
    data = make_chain(1)[0].to_dict()
    data["kind"] = "gossip"
    with pytest.raises(ValidationError) as err:
        AuditRecord.from_dict(data)
    assert err.value.field == "kind"


@given(
    length=st.integers(min_value=2, max_value=12),
    data=st.data(),
)
def test_any_single_tamper_is_detected(length: int, data: st.DataObject) -> None:
    chain = make_chain(length)
    index = data.draw(st.integers(min_value=0, max_value=length - 1))
    action = data.draw(st.sampled_from(["edit", "remove", "swap", "duplicate", "reseal"]))
    tampered = list(chain)
    if action == "edit":
        tampered[index] = replace(tampered[index], event_id="forged")
    elif action == "remove":
        del tampered[index]
    elif action == "swap":
        other = data.draw(
            st.integers(min_value=0, max_value=length - 1).filter(lambda j: j != index)
        )
        tampered[index], tampered[other] = tampered[other], tampered[index]
    elif action == "duplicate":
        tampered.insert(index, tampered[index])
    else:
        tampered[index] = replace(tampered[index], payload={"forged": index}).sealed()
    assert verify(tampered, head=chain[-1].hash) is not None
