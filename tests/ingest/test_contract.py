"""The telemetry contract: every kind of bad input gets a precise reason; the codec round-trips."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import contract
from ingest.contract import ContractError, Kind, Reason, validate

VIN = "WVWZZZ1JZXW000001"
TS = 1_767_571_200_000
T = f"vehicles/{VIN}/telemetry"


def tele(**signals: object) -> bytes:
    return orjson.dumps({"ts": TS, "seq": 7, "signals": signals})


def reason_of(topic: str, payload: bytes, **kw: int) -> Reason:
    with pytest.raises(ContractError) as info:
        validate(topic, payload, **kw)
    assert str(info.value).startswith(info.value.reason.value)
    return info.value.reason


def test_valid_telemetry_becomes_a_canonical_record() -> None:
    record = validate(T, tele(**{"Vehicle.Speed": 42, "Vehicle.IsMoving": True,
                                 "Vehicle.LowVoltageSystemState": "ON"}))
    assert record == {"kind": "vehicle_telemetry", "id": VIN, "ts": TS, "seq": 7,
                      "data": {"signals": {"Vehicle.Speed": 42.0, "Vehicle.IsMoving": True,
                                           "Vehicle.LowVoltageSystemState": "ON"}}}


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (T, b"\xff\xfe not json", Reason.NOT_JSON),
        (T, b'{"ts": 1, "seq": 1, "signals": {"Vehicle.Speed": NaN}}', Reason.NOT_JSON),
        (T, b'{"ts": 1, "seq": 1, "signals": {"Vehicle.Speed": Infinity}}', Reason.NOT_JSON),
        (T, b'"a string"', Reason.NOT_OBJECT),
        (T, orjson.dumps({"seq": 1, "signals": {"Vehicle.Speed": 1}}), Reason.MISSING_FIELD),
        (T, orjson.dumps({"ts": TS, "signals": {"Vehicle.Speed": 1}}), Reason.MISSING_FIELD),
        (T, orjson.dumps({"ts": TS, "seq": 1}), Reason.MISSING_FIELD),
        (T, orjson.dumps({"ts": str(TS), "seq": 1, "signals": {"Vehicle.Speed": 1}}),
         Reason.WRONG_TYPE),
        (T, orjson.dumps({"ts": TS, "seq": 1.5, "signals": {"Vehicle.Speed": 1}}),
         Reason.WRONG_TYPE),
        (T, orjson.dumps({"ts": TS, "seq": True, "signals": {"Vehicle.Speed": 1}}),
         Reason.WRONG_TYPE),
        (T, orjson.dumps({"ts": TS, "seq": 1, "signals": []}), Reason.WRONG_TYPE),
        (T, tele(**{"Vehicle.Speed": "fast"}), Reason.WRONG_TYPE),
        (T, tele(**{"Vehicle.Speed": True}), Reason.WRONG_TYPE),
        (T, tele(**{"Vehicle.IsMoving": 1}), Reason.WRONG_TYPE),
        # orjson refuses numbers that overflow a double, so they never become inf.
        (T, b'{"ts": 1767571200000, "seq": 1, "signals": {"Vehicle.Speed": 1e400}}',
         Reason.NOT_JSON),
        (T, tele(**{"Vehicle.Speed": -1}), Reason.OUT_OF_RANGE),
        (T, tele(**{"Vehicle.LowVoltageBattery.CurrentVoltage": 48.0}), Reason.OUT_OF_RANGE),
        (T, orjson.dumps({"ts": 5, "seq": 1, "signals": {"Vehicle.Speed": 1}}),
         Reason.OUT_OF_RANGE),
        (T, orjson.dumps({"ts": TS, "seq": -1, "signals": {"Vehicle.Speed": 1}}),
         Reason.OUT_OF_RANGE),
        (T, tele(**{"Vehicle.Teleporter.Charge": 1}), Reason.UNKNOWN_SIGNAL),
        (T, tele(**{"Vehicle.VehicleIdentification.Model": "X" * 257}), Reason.OUT_OF_RANGE),
        (T, tele(**{"Vehicle.VehicleIdentification.Model": 3}), Reason.WRONG_TYPE),
        (T, tele(**{"Vehicle.LowVoltageSystemState": "WARP"}), Reason.BAD_VALUE),
        (T, orjson.dumps({"ts": TS, "seq": 1, "signals": {}}), Reason.BAD_VALUE),
        (T, orjson.dumps({"ts": TS, "seq": 1, "signals": {"Vehicle.Speed": 1}, "x": 1}),
         Reason.UNKNOWN_FIELD),
        (T, orjson.dumps({"ts": TS, "seq": 1, "vin": "WVWZZZ1JZXW000002",
                          "signals": {"Vehicle.Speed": 1}}), Reason.ID_MISMATCH),
        ("vehicles/SHORTVIN/telemetry", tele(**{"Vehicle.Speed": 1}), Reason.BAD_ID),
        ("vehicles/WVWZZZ1JZXW00000O/telemetry", tele(**{"Vehicle.Speed": 1}), Reason.BAD_ID),
        (f"vehicles/{VIN}/diary", b"{}", Reason.UNKNOWN_TOPIC),
        ("trucks/X/telemetry", b"{}", Reason.UNKNOWN_TOPIC),
        (f"vehicles/{VIN}/events", orjson.dumps({"ts": TS, "seq": 1, "type": "dtc",
                                                 "code": "X123"}), Reason.BAD_VALUE),
        (f"vehicles/{VIN}/events", orjson.dumps({"ts": TS, "seq": 1, "type": "party"}),
         Reason.BAD_VALUE),
        (f"vehicles/{VIN}/events", orjson.dumps({"ts": TS, "seq": 1, "type": "ignition"}),
         Reason.MISSING_FIELD),
        (f"vehicles/{VIN}/events", orjson.dumps({"ts": TS, "seq": 1, "type": "charge_end",
                                                 "charger_id": "CP 1"}), Reason.BAD_VALUE),
        (f"vehicles/{VIN}/events", orjson.dumps({"ts": TS, "seq": 1, "type": "trip_end",
                                                 "charger_id": "CP-1"}), Reason.BAD_VALUE),
        (f"vehicles/{VIN}/events", orjson.dumps({"ts": TS, "seq": 1, "type": "charge_start",
                                                 "charger_id": 7}), Reason.WRONG_TYPE),
        ("chargers/CP-1/status", orjson.dumps({"ts": TS, "connectorId": 1, "status": "Charging",
                                               "errorCode": "Oops"}), Reason.BAD_VALUE),
        ("chargers/CP-1/status", orjson.dumps({"ts": TS, "connectorId": 1, "status": "Charging",
                                               "errorCode": "NoError", "chargerId": "CP-2"}),
         Reason.ID_MISMATCH),
        ("chargers/CP-1/meter", orjson.dumps({"ts": TS, "connectorId": 1,
                                              "measurands": {"Power.Imaginary": 1}}),
         Reason.UNKNOWN_SIGNAL),
        ("chargers/CP-1/meter", orjson.dumps({"ts": TS, "connectorId": 1, "vin": "BAD",
                                              "measurands": {"SoC": 50}}), Reason.BAD_ID),
        ("chargers/CP-1/meter", orjson.dumps({"ts": TS, "connectorId": 1,
                                              "measurands": {"SoC": 150}}), Reason.OUT_OF_RANGE),
    ],
)
def test_bad_input_is_rejected_with_a_precise_reason(
    topic: str, payload: bytes, reason: Reason
) -> None:
    assert reason_of(topic, payload) == reason


def test_oversized_payload_is_rejected_before_parsing() -> None:
    payload = tele(**{"Vehicle.Speed": 1.0}) + b" " * 2000
    assert reason_of(T, payload, max_bytes=1024) is Reason.OVERSIZED
    assert validate(T, payload, max_bytes=4096)["data"]["signals"]["Vehicle.Speed"] == 1.0


def test_error_message_names_the_field_and_the_range() -> None:
    with pytest.raises(ContractError) as info:
        validate(T, tele(**{"Vehicle.LowVoltageBattery.CurrentVoltage": 48.0}))
    text = str(info.value)
    assert "Vehicle.LowVoltageBattery.CurrentVoltage" in text
    assert "[0, 20]" in text


def test_charger_messages_follow_ocpp() -> None:
    status = validate("chargers/CP-1/status", orjson.dumps(
        {"ts": TS, "connectorId": 1, "status": "Faulted", "errorCode": "GroundFailure",
         "vendorErrorCode": "E42"}))
    assert status["kind"] == Kind.CHARGER_STATUS
    assert status["seq"] == TS
    meter = validate("chargers/CP-1/meter", orjson.dumps(
        {"ts": TS, "seq": 3, "connectorId": 1, "transactionId": 9, "vin": VIN,
         "measurands": {"Power.Active.Import": 7200, "Power.Offered": 11000, "SoC": 55.5}}))
    assert meter["data"]["vin"] == VIN
    assert meter["data"]["measurands"]["SoC"] == 55.5


def test_every_catalogue_signal_has_a_vss_datatype_and_consistent_bounds() -> None:
    assert len(contract.SIGNALS) > 1000
    for signal in contract.SIGNALS.values():
        assert signal.path.startswith("Vehicle.")
        assert signal.datatype
        if signal.min is not None and signal.max is not None:
            assert signal.min <= signal.max


# ---- property tests ---------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
signal_values = st.fixed_dictionaries({}, optional={
    "Vehicle.Speed": st.floats(0, 400),
    "Vehicle.LowVoltageBattery.CurrentVoltage": st.floats(0, 20),
    "Vehicle.Exterior.AirTemperature": st.floats(-60, 70),
    "Vehicle.IsMoving": st.booleans(),
    "Vehicle.LowVoltageSystemState": st.sampled_from(sorted(contract.LOW_VOLTAGE_SYSTEM_STATES)),
    "Vehicle.Powertrain.TractionBattery.CellVoltage.CellVoltages":
        st.lists(st.floats(0, 5), max_size=20),
}).filter(bool)
vins = st.text(alphabet="ABCDEFGHJKLMNPRSTUVWXYZ0123456789", min_size=17, max_size=17)
records = st.builds(
    lambda vin, ts, seq, signals: {"kind": "vehicle_telemetry", "id": vin, "ts": ts, "seq": seq,
                                   "data": {"signals": signals}},
    vins, st.integers(contract.MIN_TS_MS, contract.MAX_TS_MS), st.integers(0, 2**62),
    signal_values,
)


@given(vins, st.integers(contract.MIN_TS_MS, contract.MAX_TS_MS), st.integers(0, 2**62),
       signal_values)
def test_any_valid_message_validates_to_what_was_sent(
    vin: str, ts: int, seq: int, signals: dict[str, object]
) -> None:
    record = validate(f"vehicles/{vin}/telemetry",
                      orjson.dumps({"ts": ts, "seq": seq, "signals": signals}))
    assert record["id"] == vin
    assert record["ts"] == ts
    assert record["seq"] == seq
    assert record["data"]["signals"] == signals


@given(st.lists(records, max_size=30))
def test_batch_codec_round_trips(batch: list[dict[str, object]]) -> None:
    assert contract.decode_batch(contract.encode_batch(batch)) == batch


@given(st.binary(max_size=300), st.sampled_from([T, f"vehicles/{VIN}/events",
                                                  "chargers/CP-1/status", "chargers/CP-1/meter",
                                                  f"vehicles/{VIN}/ota/status"]))
def test_arbitrary_bytes_never_crash_the_validator(payload: bytes, topic: str) -> None:
    try:
        record = validate(topic, payload)
    except ContractError as exc:
        assert exc.reason in Reason
    else:
        assert record["id"] in topic


@given(st.dictionaries(st.sampled_from(["ts", "seq", "signals", "vin", "extra"]),
                       st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                                 finite, st.text(),
                                 st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
                                 st.dictionaries(st.text(max_size=40), finite, max_size=3))))
def test_arbitrary_json_objects_get_a_reason_or_a_valid_record(body: dict[str, object]) -> None:
    try:
        record = validate(T, orjson.dumps(body))
    except ContractError as exc:
        assert exc.detail
    else:
        assert all(math.isfinite(v) for v in record["data"]["signals"].values()
                   if isinstance(v, float))


def test_decode_batch_rejects_foreign_records() -> None:
    with pytest.raises(ValueError, match="not an ownercare record batch"):
        contract.decode_batch(b'{"hello": 1}')


_ANY_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.booleans(),
    st.text(max_size=5), st.none(), st.lists(st.floats(-5, 5), max_size=3))


@given(st.sampled_from([*contract.SIGNALS, "Vehicle.NoSuchSignal"]), _ANY_VALUE)
def test_fast_signal_path_agrees_with_the_full_validator(path: str, value: object) -> None:
    """The bridge's fast path accepts exactly what validate_signal accepts, unchanged."""
    try:
        expected: object = {path: contract.validate_signal(path, value)}
    except contract.ContractError as exc:
        expected = exc.reason
    try:
        got: object = contract.DEFAULT_CHECKER.values({path: value}, None)
    except contract.ContractError as exc:
        got = exc.reason
    assert got == expected


def test_ids_and_codes_with_a_trailing_newline_are_refused() -> None:
    vin = "WBENCH000AAAAAAAA"
    body = orjson.dumps({"ts": 1_767_225_600_000, "seq": 1, "signals": {"Vehicle.Speed": 1.0}})
    with pytest.raises(ContractError) as exc:
        validate(f"vehicles/{vin}\n/telemetry", body)
    assert exc.value.reason is Reason.BAD_ID
    event = orjson.dumps({"ts": 1_767_225_600_000, "seq": 2, "type": "dtc", "code": "P0AA6\n"})
    with pytest.raises(ContractError) as exc:
        validate(f"vehicles/{vin}/events", event)
    assert exc.value.reason is Reason.BAD_VALUE


# ------------------------------------------------------------------ ts ahead of receive time


@given(ahead_ms=st.integers(-10**12, 10**12), skew_ms=st.integers(0, 10**9))
def test_a_ts_further_ahead_of_the_receive_time_than_the_skew_is_refused(
        ahead_ms: int, skew_ms: int) -> None:
    received = 1_767_571_200_000
    record = {"kind": "vehicle_telemetry", "id": "WCRAAAAAAAAAAAAA1", "ts": received + ahead_ms,
              "seq": 1, "data": {"signals": {}}}
    if ahead_ms <= skew_ms:
        contract.check_not_future(record, received, skew_ms)
    else:
        with pytest.raises(contract.ContractError) as caught:
            contract.check_not_future(record, received, skew_ms)
        assert caught.value.reason is contract.Reason.TS_IN_FUTURE
        assert str(received) in caught.value.detail
    contract.check_not_future(record, received, None)  # no limit: anything passes
