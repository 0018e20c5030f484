"""The device contract's remote command topics: results validated like every other kind."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import contract
from ingest.contract import ContractError, Reason

VIN = "WCRAAAAAAAAAAAAA1"
TOPIC = f"vehicles/{VIN}/commands/result"


def validate(**body: object) -> dict[str, object]:
    payload = {"ts": 1_767_225_600_000, "seq": 3, "command_id": "c-1", "status": "acknowledged",
               **body}
    return contract.validate(TOPIC, orjson.dumps(payload))


def test_a_battery_test_result_becomes_a_canonical_record() -> None:
    record = validate(status="failed", kind="battery_test", reason="battery_failed_load_test",
                      result={"passed": False, "resting_voltage": 12.3,
                              "voltage_under_load": 8.7, "crank_margin_v": -0.9,
                              "load_a": 100.0, "load_ms": 10000})
    assert record["kind"] == "vehicle_command_result"
    assert record["data"]["result"]["passed"] is False
    assert record["data"]["reason"] == "battery_failed_load_test"


def test_a_snapshot_result_is_checked_against_the_signal_catalogue() -> None:
    ok = validate(status="succeeded", kind="snapshot", result={
        "signals": {"Vehicle.Speed": 0.0}, "software": {"telematics": "1.2.3"},
        "dtcs": [{"code": "P0A80", "state": "active",
                  "freeze_frame": {"Vehicle.Speed": 12.0}}]})
    assert ok["data"]["result"]["dtcs"][0]["code"] == "P0A80"
    with pytest.raises(ContractError) as info:
        validate(status="succeeded", kind="snapshot", result={"signals": {"Vehicle.Nope": 1.0}})
    assert info.value.reason is Reason.UNKNOWN_SIGNAL


@pytest.mark.parametrize(("body", "reason"), [
    ({"status": "done"}, Reason.BAD_VALUE),
    ({"command_id": "a b"}, Reason.BAD_VALUE),
    ({"command_id": 5}, Reason.WRONG_TYPE),
    ({"extra": 1}, Reason.UNKNOWN_FIELD),
    ({"status": "succeeded", "kind": "battery_test", "result": {"passed": "yes"}},
     Reason.WRONG_TYPE),
    ({"status": "succeeded", "kind": "battery_test",
      "result": {"passed": True, "resting_voltage": 99}}, Reason.OUT_OF_RANGE),
    ({"status": "acknowledged", "kind": "wake", "result": {}}, Reason.BAD_VALUE),
    ({"status": "succeeded", "kind": "clear_dtc", "result": {"cleared": ["X1"]}},
     Reason.BAD_VALUE),
    ({"kind": "unlock"}, Reason.BAD_VALUE),
])
def test_bad_results_are_refused_with_a_precise_reason(body: dict[str, object],
                                                       reason: Reason) -> None:
    with pytest.raises(ContractError) as info:
        validate(**body)
    assert info.value.reason is reason


def test_missing_command_id_is_a_missing_field() -> None:
    with pytest.raises(ContractError) as info:
        contract.validate(TOPIC, orjson.dumps({"ts": 1_767_225_600_000, "seq": 1,
                                               "status": "refused"}))
    assert info.value.reason is Reason.MISSING_FIELD


def test_the_command_topic_is_outbound_and_the_result_topic_inbound() -> None:
    assert contract.is_outbound(contract.remote_command_topic(VIN))
    assert not contract.is_outbound(TOPIC)
    assert contract.parse_topic(TOPIC) == (contract.Kind.VEHICLE_COMMAND_RESULT, VIN)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=3), max_leaves=12)


@given(st.dictionaries(st.sampled_from(["command_id", "status", "kind", "reason", "detail",
                                        "result", "vin"]), json_values))
def test_any_result_payload_is_accepted_or_refused_with_a_reason(body: dict[str, object]
                                                                 ) -> None:
    payload = {"ts": 1_767_225_600_000, "seq": 1, **body}
    try:
        raw = orjson.dumps(payload)
    except TypeError:
        return
    try:
        record = contract.validate(TOPIC, raw)
    except ContractError as exc:
        assert exc.reason in Reason
    else:
        assert record["data"]["status"] in contract.COMMAND_REPORTED_STATES
