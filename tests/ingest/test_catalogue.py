"""The VSS catalogue as the signal contract: the pinned release, overlays, per-signal checks."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import contract
from ingest.catalogue import LIST_MAX_LEN, OverlayError, SignalType, load_catalogue
from ingest.contract import ContractError, Reason, SignalChecker, SignalRejection, validate
from tests.overlaykit import HEAT_PUMP_OVERLAY

VIN = "WVWZZZ1JZXW000001"
TS = 1_767_571_200_000
T = f"vehicles/{VIN}/telemetry"
SIGNALS = contract.SIGNALS


def tele(signals: dict[str, object]) -> bytes:
    return orjson.dumps({"ts": TS, "seq": 7, "signals": signals})


def test_the_catalogue_is_vss_6_0_with_the_spec_types_and_units() -> None:
    raw = json.loads(resources.files("ingest").joinpath("vss/vss.json").read_bytes())
    assert raw["release"] == "v6.0"
    assert raw["license"] == "MPL-2.0"
    assert resources.files("ingest").joinpath("vss/LICENSE").read_text().startswith(
        "Mozilla Public License Version 2.0")
    assert contract.CATALOGUE.release == "v6.0"
    assert len(SIGNALS) == len(raw["signals"]) > 1200
    charge_rate = SIGNALS["Vehicle.Powertrain.TractionBattery.Charging.ChargeRate"]
    assert (charge_rate.type, charge_rate.unit) == (SignalType.FLOAT, "km/h")
    odometer = SIGNALS["Vehicle.TraveledDistance"]
    assert (odometer.datatype, odometer.unit, odometer.min, odometer.max) == (
        "uint32", "m", 0, 2**32 - 1)
    pressure = SIGNALS["Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"]
    assert (pressure.type, pressure.datatype, pressure.unit) == (SignalType.INT, "uint16", "kPa")
    assert (pressure.min, pressure.max) == (0, 1000)  # ownercare's plausibility bound
    state = SIGNALS["Vehicle.LowVoltageSystemState"]
    assert state.type is SignalType.ENUM
    assert state.allowed == contract.LOW_VOLTAGE_SYSTEM_STATES
    soc = SIGNALS["Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"]
    assert (soc.min, soc.max, soc.unit) == (0, 100, "percent")
    assert "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature" in SIGNALS
    assert SIGNALS["Vehicle.Powertrain.TractionBattery.CellVoltage.CellVoltages"].type \
        is SignalType.FLOAT_LIST


def test_standard_signals_a_real_car_sends_are_accepted() -> None:
    record = validate(T, tele({
        "Vehicle.Cabin.HVAC.AmbientAirTemperature": 21.5,
        "Vehicle.Powertrain.CombustionEngine.Speed": 2100.0,
        "Vehicle.Powertrain.CombustionEngine.IsRunning": True,
        "Vehicle.Powertrain.FuelSystem.RelativeLevel": 64,
        "Vehicle.Powertrain.CombustionEngine.EngineOil.Level": "NORMAL",
        "Vehicle.TraveledDistance": 123_456_789.0,  # an integral float is that integer
    }))
    assert record["data"]["signals"]["Vehicle.TraveledDistance"] == 123_456_789
    assert type(record["data"]["signals"]["Vehicle.TraveledDistance"]) is int


@pytest.mark.parametrize(("path", "value", "reason"), [
    ("Vehicle.TraveledDistance", 12.5, Reason.WRONG_TYPE),  # uint32
    ("Vehicle.TraveledDistance", -1, Reason.OUT_OF_RANGE),
    ("Vehicle.Powertrain.FuelSystem.RelativeLevel", 101, Reason.OUT_OF_RANGE),
    ("Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure", 231.4, Reason.WRONG_TYPE),
    ("Vehicle.Powertrain.CombustionEngine.EngineOil.Level", "FULL", Reason.BAD_VALUE),
    ("Vehicle.Powertrain.FuelSystem.SupportedFuelTypes", ["DIESEL", "COAL"], Reason.BAD_VALUE),
    ("Vehicle.Powertrain.FuelSystem.SupportedFuelTypes", "DIESEL", Reason.WRONG_TYPE),
    ("Vehicle.Warp.Drive", 1.0, Reason.UNKNOWN_SIGNAL),
])
def test_a_bad_signal_gets_its_path_and_reason(path: str, value: object, reason: Reason
                                              ) -> None:
    with pytest.raises(ContractError) as info:
        validate(T, tele({path: value}))
    assert info.value.reason is reason
    assert path in info.value.detail


def test_with_a_rejected_list_a_message_keeps_its_valid_signals() -> None:
    rejected: list[SignalRejection] = []
    record = validate(T, tele({"Vehicle.Speed": 50.0, "Vehicle.Warp.Drive": 1.0,
                               "Vehicle.TraveledDistance": "far", "Vehicle.IsMoving": True}),
                      rejected=rejected)
    assert record["data"]["signals"] == {"Vehicle.Speed": 50.0, "Vehicle.IsMoving": True}
    assert [(r.path, r.reason) for r in rejected] == [
        ("Vehicle.Warp.Drive", Reason.UNKNOWN_SIGNAL),
        ("Vehicle.TraveledDistance", Reason.WRONG_TYPE)]
    assert rejected[1].value == "far"


def test_envelope_faults_still_reject_the_whole_message() -> None:
    rejected: list[SignalRejection] = []
    for body, reason in ((b'{"ts": 1, "seq": 1, "signals": {"Vehicle.Speed": 1.0}}',
                          Reason.OUT_OF_RANGE),
                         (orjson.dumps({"ts": TS, "seq": 1, "signals": {}}), Reason.BAD_VALUE),
                         (orjson.dumps({"ts": TS, "seq": 1, "signals": [1]}), Reason.WRONG_TYPE),
                         (orjson.dumps({"ts": TS, "seq": 1, "signals": {"Vehicle.Speed": 1.0},
                                        "extra": 1}), Reason.UNKNOWN_FIELD)):
        with pytest.raises(ContractError) as info:
            validate(T, body, rejected=rejected)
        assert info.value.reason is reason
    assert rejected == []


# ---- overlays ------------------------------------------------------------------------------

OVERLAY = HEAT_PUMP_OVERLAY + """Vehicle.Acme.HeatPump.Mode:
  type: sensor
  datatype: string
  allowed: ['OFF', 'HEAT', 'COOL']
Vehicle.Speed:
  max: 250
Vehicle.Cabin.Sunroof:
  delete: true
"""


def write(tmp_path: Path, text: str, name: str = "acme.vspec") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_an_overlay_adds_private_signals_narrows_and_deletes(tmp_path: Path) -> None:
    catalogue = load_catalogue([write(tmp_path, OVERLAY)])
    cop = catalogue.signals["Vehicle.Acme.HeatPump.Cop"]
    assert (cop.type, cop.unit, cop.min, cop.max, cop.private) == (
        SignalType.FLOAT, "ratio", 0, 10, True)
    assert catalogue.signals["Vehicle.Acme.HeatPump.Mode"].allowed == {"OFF", "HEAT", "COOL"}
    assert catalogue.signals["Vehicle.Speed"].max == 250
    assert catalogue.signals["Vehicle.Speed"].unit == "km/h"  # the rest stays the spec's
    assert not any(p.startswith("Vehicle.Cabin.Sunroof") for p in catalogue.signals)
    checker = SignalChecker(catalogue)
    rejected: list[SignalRejection] = []
    record = validate(T, tele({"Vehicle.Acme.HeatPump.Cop": 3.2, "Vehicle.Speed": 260.0,
                               "Vehicle.Acme.HeatPump.Mode": "HEAT"}),
                      checker=checker, rejected=rejected)
    assert record["data"]["signals"] == {"Vehicle.Acme.HeatPump.Cop": 3.2,
                                         "Vehicle.Acme.HeatPump.Mode": "HEAT"}
    assert [(r.path, r.reason) for r in rejected] == [("Vehicle.Speed", Reason.OUT_OF_RANGE)]
    with pytest.raises(ContractError, match="configured overlays"):
        checker.check("Vehicle.Acme.Nope", 1.0)


@pytest.mark.parametrize(("text", "message"), [
    ("Vehicle.Acme.X:\n  type: sensor\n", "needs a datatype"),
    ("Vehicle.Acme.X:\n  type: sensor\n  datatype: quaternion\n", "not a VSS primitive type"),
    ("Vehicle.Acme.X:\n  datatype: float\n", "needs type sensor, actuator or attribute"),
    ("Vehicle.Acme.X:\n  type: sensor\n  datatype: float\n  min: 5\n  max: 1\n",
     "min 5 is above max 1"),
    ("Vehicle.Acme.X:\n  type: sensor\n  datatype: float\n  instances: [A, B]\n",
     "unknown key(s) instances"),
    ("Acme X:\n  type: sensor\n", "not a full dotted VSS path"),
    ("Vehicle." + ".".join(["Segment" * 4] * 6) + ":\n  type: sensor\n",
     "longer than 160 characters"),
    ("#include other.vspec\n", "#include is not supported"),
    ("Vehicle.Acme.X:\n  type: sensor\n  datatype: string\n  allowed: [ON, OFF]\n",
     "quote values such as 'ON'"),
    ("Vehicle.Acme.X: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping of VSS paths"),
])
def test_a_bad_overlay_is_refused_naming_file_node_and_why(tmp_path: Path, text: str,
                                                           message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(OverlayError) as info:
        load_catalogue([path])
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_a_missing_overlay_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OverlayError, match="cannot be read"):
        load_catalogue([tmp_path / "absent.vspec"])


# ---- property tests ------------------------------------------------------------------------

_PATHS = sorted(SIGNALS)
_ANY = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
              st.sampled_from(["ON", "OFF", "NORMAL", "DIESEL", "LOCK"])),
    lambda inner: st.lists(inner, max_size=4), max_leaves=8)
_VSS_LIKE = st.from_regex(r"Vehicle(\.[A-Z][a-z]{1,6}){1,4}", fullmatch=True)


@given(st.dictionaries(st.one_of(st.sampled_from(_PATHS), _VSS_LIKE), _ANY, min_size=1,
                       max_size=12))
def test_every_signal_is_kept_or_rejected_on_its_own(signals: dict[str, object]) -> None:
    """Each signal lands in the record or in the rejections, never both, never neither; what
    is kept is exactly what the one-signal check accepts, and the rejections keep the order."""
    rejected: list[SignalRejection] = []
    record = validate(T, tele(signals), rejected=rejected)
    kept = record["data"]["signals"]
    assert set(kept) | {r.path for r in rejected} == set(signals)
    assert not set(kept) & {r.path for r in rejected}
    for path, value in signals.items():
        try:
            expected = contract.validate_signal(path, value)
        except ContractError as exc:
            assert path not in kept
            assert any(r.path == path and r.reason is exc.reason for r in rejected)
        else:
            assert kept[path] == expected
    assert [r.path for r in rejected] == [p for p in signals if p not in kept]


@given(st.sampled_from(_PATHS), _ANY)
def test_an_accepted_value_fits_the_spec(path: str, value: object) -> None:
    spec = SIGNALS[path]
    try:
        got = contract.validate_signal(path, value)
    except ContractError as exc:
        assert exc.reason in Reason
        return
    items = got if isinstance(got, list) else [got]
    if spec.type in (SignalType.FLOAT_LIST, SignalType.INT_LIST, SignalType.STRING_LIST):
        assert isinstance(got, list)
        assert len(got) <= LIST_MAX_LEN
    for item in items:
        if spec.type in (SignalType.INT, SignalType.INT_LIST):
            assert type(item) is int
        if spec.type in (SignalType.FLOAT, SignalType.FLOAT_LIST):
            assert type(item) is float
            assert math.isfinite(item)
        if isinstance(item, int | float) and not isinstance(item, bool):
            assert spec.min is None or item >= spec.min
            assert spec.max is None or item <= spec.max
        if spec.allowed is not None:
            assert item in spec.allowed
        if spec.type is SignalType.BOOL:
            assert type(item) is bool


_CHECKER = SignalChecker(contract.CATALOGUE)
_SCALAR_PATHS = sorted(p for p, s in _CHECKER.signals.items()
                       if s.type in (SignalType.FLOAT, SignalType.INT, SignalType.BOOL,
                                     SignalType.ENUM, SignalType.STRING))
_SOME_ENUM_VALUES = sorted({v for s in _CHECKER.signals.values() for v in s.allowed or ()})


@given(st.sampled_from(_SCALAR_PATHS),
       st.one_of(st.sampled_from(_SOME_ENUM_VALUES), st.text(max_size=300),
                 st.floats(), st.integers(-2**40, 2**40), st.booleans(), st.none()))
def test_the_fast_path_accepts_exactly_what_the_full_check_accepts(path: str,
                                                                   value: object) -> None:
    """``values`` decides the common cases without ``check``: never differently from it."""
    rejected: list[SignalRejection] = []
    accepted = _CHECKER.values({path: value}, rejected)
    try:
        expected = _CHECKER.check(path, value)
    except ContractError as exc:
        assert accepted == {}
        assert [(r.path, r.reason) for r in rejected] == [(path, exc.reason)]
    else:
        assert accepted == {path: expected}
        assert rejected == []
