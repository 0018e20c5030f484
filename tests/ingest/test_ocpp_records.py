"""The pure OCPP -> contract mapping: any valid MeterValues gives records the contract
accepts, at the event time the charge point stamped them with."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import contract, ocpp_records
from ingest.contract import OCPP_MEASURANDS, ContractError, Reason

MIN_MS, MAX_MS = contract.MIN_TS_MS, contract.MAX_TS_MS - 1

# (unit as the charge point sends it, its factor to the contract's unit, offset)
UNITS: dict[str, list[tuple[str | None, float, float]]] = {
    "Power.Active.Import": [(None, 1, 0), ("W", 1, 0), ("kW", 1000, 0)],
    "Power.Offered": [(None, 1, 0), ("W", 1, 0), ("kW", 1000, 0)],
    "Current.Import": [(None, 1, 0), ("A", 1, 0)],
    "Voltage": [(None, 1, 0), ("V", 1, 0)],
    "Temperature": [("Celsius", 1, 0), ("Celcius", 1, 0), ("K", 1, -273.15)],
    "Energy.Active.Import.Register": [(None, 1, 0), ("Wh", 1, 0), ("kWh", 1000, 0)],
    "SoC": [("Percent", 1, 0), (None, 1, 0)],
}


def iso_of(ms: int, style: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    if style == 0:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if style == 1:  # another offset, same instant
        return moment.astimezone(UTC.__class__(timedelta(hours=2))).isoformat(
            timespec="milliseconds")
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds")  # naive: UTC


@st.composite
def sampled_value(draw: st.DrawFn, measurand: str) -> tuple[dict[str, Any], float]:
    """One sampledValue of ``measurand`` and the value the contract should see."""
    spec = OCPP_MEASURANDS[measurand]
    unit, factor, offset = draw(st.sampled_from(UNITS[measurand]))
    # A hair inside the range: a unit conversion may move a value at the very bound by an ulp.
    margin = (spec.max - spec.min) * 1e-9
    target = draw(st.floats(spec.min + margin, spec.max - margin, allow_nan=False))
    sent = (target - offset) / factor
    text = repr(sent)
    value = float(text) * factor + offset
    item: dict[str, Any] = {"value": text}
    if measurand != ocpp_records.ENERGY or draw(st.booleans()):
        item["measurand"] = measurand
    if unit is not None:
        item["unit"] = unit
    if draw(st.booleans()):
        item["context"] = draw(st.sampled_from(["Sample.Periodic", "Transaction.Begin",
                                                "Sample.Clock", "Trigger"]))
    return item, value


@st.composite
def meter_value(draw: st.DrawFn) -> tuple[dict[str, Any], int, dict[str, float]]:
    ts = draw(st.integers(MIN_MS + 86_400_000, MAX_MS - 86_400_000))
    names = draw(st.lists(st.sampled_from(sorted(OCPP_MEASURANDS)), min_size=1, max_size=7,
                          unique=True))
    items, expected = [], {}
    for name in names:
        item, value = draw(sampled_value(name))
        items.append(item)
        expected[name] = value
    if draw(st.booleans()):  # measurands outside the contract are left out, not refused
        items.append({"value": "50.0", "measurand": "Frequency"})
    return ({"timestamp": iso_of(ts, draw(st.integers(0, 2))), "sampledValue": items}, ts,
            expected)


@given(st.lists(meter_value(), min_size=1, max_size=4), st.integers(0, 100),
       st.none() | st.integers(0, 2**31 - 1))
def test_any_valid_meter_values_map_to_records_the_contract_accepts(
        elements: list[tuple[dict[str, Any], int, dict[str, float]]], connector: int,
        tx: int | None) -> None:
    payload: dict[str, Any] = {"connectorId": connector,
                               "meterValue": [e for e, _, _ in elements]}
    if tx is not None:
        payload["transactionId"] = tx
    mapped = ocpp_records.meter_values(payload, vin="WVWZZZAUZKW000001")
    assert len(mapped.payloads) == len(elements)
    clock = ocpp_records.SeqClock()
    for out, (_, ts, expected) in zip(mapped.payloads, elements, strict=True):
        record = ocpp_records.canonical("CP-1", out, clock.seq(out))
        assert record["kind"] == "charger_meter"
        assert record["id"] == "CP-1"
        assert record["ts"] == ts  # the event time the charge point stamped
        data = record["data"]
        assert data["connectorId"] == connector
        assert data.get("transactionId") == tx
        assert data["vin"] == "WVWZZZAUZKW000001"
        assert set(data["measurands"]) == set(expected)
        for name, value in expected.items():
            assert math.isclose(data["measurands"][name], value, rel_tol=1e-9, abs_tol=1e-5)


@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=3),
       st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=3))
def test_phases_add_up_for_power_and_average_for_current(powers: list[float],
                                                         currents: list[float]) -> None:
    items = [{"value": repr(p), "measurand": "Power.Active.Import", "unit": "W",
              "phase": f"L{i + 1}"} for i, p in enumerate(powers)]
    items += [{"value": repr(c), "measurand": "Current.Import", "unit": "A",
               "phase": f"L{i + 1}"} for i, c in enumerate(currents)]
    items.append({"value": "3.0", "measurand": "Current.Import", "unit": "A", "phase": "N"})
    got = ocpp_records.measurands_of(items, set())
    assert math.isclose(got["Power.Active.Import"], math.fsum(powers), abs_tol=1e-5)
    assert math.isclose(got["Current.Import"], math.fsum(currents) / len(currents),
                        abs_tol=1e-5)


def test_a_value_without_phase_wins_over_the_phases() -> None:
    got = ocpp_records.measurands_of([
        {"value": "10", "measurand": "Current.Import", "phase": "L1"},
        {"value": "32", "measurand": "Current.Import"}], set())
    assert got == {"Current.Import": 32.0}


def test_signed_and_unknown_measurands_are_left_out_and_named() -> None:
    ignored: set[str] = set()
    got = ocpp_records.measurands_of([
        {"value": "abc==", "format": "SignedData"},
        {"value": "0.98", "measurand": "Power.Factor"},
        {"value": "11000", "measurand": "Power.Active.Import"}], ignored)
    assert got == {"Power.Active.Import": 11000.0}
    assert ignored == {"Energy.Active.Import.Register (SignedData)", "Power.Factor"}


@pytest.mark.parametrize(("item", "reason"), [
    ({"value": "fast", "measurand": "Power.Active.Import"}, Reason.WRONG_TYPE),
    ({"value": "nan", "measurand": "Power.Active.Import"}, Reason.NOT_FINITE),
    ({"value": "5", "measurand": "Voltage", "unit": "kW"}, Reason.BAD_VALUE),
    ({"value": "5", "measurand": "SoC", "unit": "Furlongs"}, Reason.BAD_VALUE),
])
def test_bad_sampled_values_are_refused_with_a_reason(item: dict[str, Any],
                                                      reason: Reason) -> None:
    with pytest.raises(ContractError) as caught:
        ocpp_records.measurands_of([item], set())
    assert caught.value.reason is reason


def test_out_of_range_values_are_refused_by_the_contract() -> None:
    mapped = ocpp_records.meter_values({"connectorId": 1, "meterValue": [{
        "timestamp": "2026-01-05T00:00:00Z",
        "sampledValue": [{"value": "150", "measurand": "SoC", "unit": "Percent"}]}]})
    with pytest.raises(ContractError) as caught:
        ocpp_records.canonical("CP-1", mapped.payloads[0], 1)
    assert caught.value.reason is Reason.OUT_OF_RANGE


@given(st.integers(MIN_MS, MAX_MS), st.integers(0, 2))
def test_timestamps_keep_their_instant(ms: int, style: int) -> None:
    assert ocpp_records.parse_timestamp("timestamp", iso_of(ms, style)) == ms


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01T00:00:00Z", ""])
def test_bad_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ContractError) as caught:
        ocpp_records.parse_timestamp("timestamp", text)
    assert caught.value.reason is Reason.BAD_VALUE


@given(st.integers(1, ocpp_records.MAX_CONNECTOR), st.integers(MIN_MS, MAX_MS))
def test_transaction_ids_fit_ocpp_and_name_their_connector(connector: int, ms: int) -> None:
    tx = ocpp_records.transaction_id(connector, ms)
    assert 0 < tx <= 2**31 - 1
    assert ocpp_records.connector_of(tx) == connector
    assert ocpp_records.transaction_id(connector, ms) == tx  # a resent Start: the same id


def status(ts: int, status: str = "Available") -> ocpp_records.Payload:
    return ocpp_records.Payload(contract.Kind.CHARGER_STATUS, {
        "ts": ts, "connectorId": 1, "status": status, "errorCode": "NoError"})


@given(st.lists(st.tuples(st.integers(MIN_MS, MIN_MS + 5), st.sampled_from(
    ["Available", "Preparing", "Charging"])), min_size=1, max_size=30))
def test_seq_is_event_time_and_repeats_get_the_same_seq(calls: list[tuple[int, str]]) -> None:
    clock = ocpp_records.SeqClock()
    seqs = [clock.seq(status(ts, s)) for ts, s in calls]
    for (ts, _), seq in zip(calls, seqs, strict=True):
        assert seq // ocpp_records.SEQ_PER_MS == ts
        assert 0 <= seq <= contract.MAX_SEQ
    # Within a run of one millisecond: distinct records count up in arrival order, and a
    # record sent again gets the seq it had.
    run_start = 0
    for i in range(1, len(calls) + 1):
        if i == len(calls) or calls[i][0] != calls[run_start][0]:
            firsts: dict[str, int] = {}
            for (_, s), seq in zip(calls[run_start:i], seqs[run_start:i], strict=True):
                firsts.setdefault(s, seq)
                assert seq == firsts[s]
            assert sorted(firsts.values()) == list(firsts.values())
            assert len(set(firsts.values())) == len(firsts)
            run_start = i


def test_vin_tags_name_the_car() -> None:
    assert ocpp_records.vin_of("wvwzzzauzkw000001") == "WVWZZZAUZKW000001"
    assert ocpp_records.vin_of("04A1B2C3D4E5F6") is None  # an RFID card
    assert ocpp_records.vin_of(None) is None


def test_a_stop_gives_its_transaction_data_then_the_final_register() -> None:
    mapped = ocpp_records.stop_transaction({
        "transactionId": 1234, "meterStop": 5000, "timestamp": "2026-01-05T01:00:00Z",
        "transactionData": [{"timestamp": "2026-01-05T00:59:00Z", "sampledValue": [
            {"value": "4.9", "unit": "kWh"}]}]}, connector=2, vin=None)
    assert [(p.ts, p.body["measurands"]) for p in mapped.payloads] == [
        (1_767_574_740_000, {"Energy.Active.Import.Register": 4900.0}),
        (1_767_574_800_000, {"Energy.Active.Import.Register": 5000.0})]
    assert all(p.body["connectorId"] == 2 and p.body["transactionId"] == 1234
               for p in mapped.payloads)


def test_heartbeats_repeat_the_charge_points_last_status() -> None:
    first = ocpp_records.charge_point_status(1_000, None)
    assert first.body == {"ts": 1_000, "connectorId": 0, "status": "Available",
                          "errorCode": "NoError"}
    last = ocpp_records.status_notification({"connectorId": 0, "status": "Faulted",
                                             "errorCode": "InternalError",
                                             "timestamp": "2026-01-05T00:00:00Z"}, 5)
    again = ocpp_records.charge_point_status(2_000, last.body)
    assert again.body == {"ts": 2_000, "connectorId": 0, "status": "Faulted",
                          "errorCode": "InternalError"}
    boot = ocpp_records.charge_point_status(3_000, None, {"chargePointVendor": "Acme",
                                                          "chargePointModel": "DC150"})
    assert boot.body["vendorId"] == "Acme"
    assert boot.body["info"] == "DC150"
