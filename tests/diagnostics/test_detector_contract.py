"""One contract, run over every detector in the registry (River-style streaming interface).

A detector new to ``diagnostics.registry.DETECTORS``, of any asset kind, is checked here
without writing a test, fed the records of its kind (``STREAMS``: a car's telemetry and
events; a charger's OCPP records, meter values to ``update`` and status notifications to
``on_event``) with a sweep (``Detector.sweep``) at every sweep boundary of event time in
between: parameters under their constructor names, the sweep capability declared exactly when
implemented, JSON state that stays small, honest ``state_changed`` flags, determinism, event
time only, and restarts from serialised state.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from diagnostics.base import AlarmPolicy, Detector, Outcome
from diagnostics.registry import DETECTORS, AssetKind
from diagnostics.silence import SWEEP_INTERVAL_MS
from tests.diagnostics.battery_series import COLD_SNAP, Message, messages, weakening
from tests.diagnostics.charger_series import DAY_MS, T0, Charger, folding, steady
from vocab.severity import SEVERITIES


def stream(days: float = 30, **options: Any) -> Iterator[Message]:
    """A weakening 12 V battery with ignition events, plus a few trouble codes and junk."""
    for i, (ts, kind, payload) in enumerate(messages(days, weakening(12.7, 0.03), COLD_SNAP,
                                                     seed=7, ignition_events=True, **options)):
        yield ts, kind, payload
        if i % 997 == 0:
            yield ts, "event", {"type": "dtc", "code": "P0AA6", "state": "active"}
        if i % 1499 == 0:
            yield ts, "event", {"type": "dtc", "code": "P0AA6", "state": "cleared"}
        if i % 733 == 0:  # malformed values must not crash a detector
            yield ts, "telemetry", {"Vehicle.LowVoltageBattery.CurrentVoltage": float("nan"),
                                    "Vehicle.Exterior.AirTemperature": "cold",
                                    "Vehicle.LowVoltageSystemState": None}


def charger_stream(days: float = 30, **_options: Any) -> Iterator[Message]:
    """A charger that starts folding back after a week, with walk-ins, glitches and junk."""
    charger = Charger()
    for i in range(int(days * 3)):
        start = T0 + i * DAY_MS // 3
        profile = folding(100_000, 0.7 - 0.01 * i) if i > 21 else steady(100_000)
        for r in charger.session(start, 30 + i % 20, profile, vin=None if i % 3 else "V1",
                                 end_status="Faulted" if i % 11 == 0 else "Finishing"):
            yield r["ts"], "telemetry" if r["kind"] == "charger_meter" else "event", r["data"]
        if i % 7 == 0:  # malformed values must not crash a detector
            yield start + 1, "telemetry", {"connectorId": 1, "transactionId": "x",
                                           "measurands": {"Power.Active.Import": float("nan"),
                                                          "SoC": "full"}}
            yield start + 2, "event", {"connectorId": 1, "status": None}


# The records each asset kind's detectors are fed.
STREAMS: dict[AssetKind, Callable[..., Iterator[Message]]] = {
    "vehicle": stream,
    "charger": charger_stream,
}


def with_sweeps(records: Iterator[Message]) -> Iterator[Message]:
    """``records`` with a sweep at every sweep boundary the event time passes, before the first
    record after it (as the pipelines sweep every asset when the fleet's event time moves on,
    whether or not this one reports)."""
    boundary: int | None = None
    for message in records:
        ts = message[0]
        if boundary is None:
            boundary = ts - ts % SWEEP_INTERVAL_MS + SWEEP_INTERVAL_MS
        while boundary < ts:
            yield boundary, "sweep", {}
            boundary += SWEEP_INTERVAL_MS
        yield message


def stream_for(kind: AssetKind, days: float = 30, **options: Any) -> Iterator[Message]:
    return with_sweeps(STREAMS[kind](days, **options))


def step(detector: Detector, state: dict[str, Any], message: Message) -> Outcome:
    ts, kind, payload = message
    if kind == "telemetry":
        return detector.update(state, ts, payload)
    if kind == "sweep":
        return detector.sweep(state, ts)
    return detector.on_event(state, ts, payload)


def feed(detector: Detector, kind: AssetKind, days: float = 30
         ) -> tuple[dict[str, Any], list[Outcome]]:
    state = detector.new_state()
    return state, [step(detector, state, m) for m in stream_for(kind, days)]


REGISTERED = [(kind, alert_type, cls) for kind, detectors in DETECTORS.items()
              for alert_type, cls in detectors.items()]


@pytest.fixture(params=REGISTERED, ids=[f"{kind}-{alert}" for kind, alert, _ in REGISTERED])
def registered(request: pytest.FixtureRequest) -> tuple[AssetKind, str, type[Detector]]:
    registered: tuple[AssetKind, str, type[Detector]] = request.param
    return registered


@pytest.fixture
def detector_cls(registered: tuple[AssetKind, str, type[Detector]]) -> type[Detector]:
    return registered[2]


@pytest.fixture
def kind(registered: tuple[AssetKind, str, type[Detector]]) -> AssetKind:
    return registered[0]


def test_every_asset_kind_has_detectors_and_a_stream() -> None:
    assert set(DETECTORS) == set(STREAMS) == {"vehicle", "charger"}
    assert all(DETECTORS.values())


def test_parameters_are_stored_under_their_constructor_names(detector_cls: type[Detector]
                                                             ) -> None:
    detector = detector_cls()
    names = [p for p in inspect.signature(detector_cls.__init__).parameters if p != "self"]
    assert names, "a detector documents its parameters in its constructor"
    for name in names:
        assert hasattr(detector, name), name
    assert detector.params() == {n: getattr(detector, n) for n in names}
    assert repr(detector).startswith(f"{detector_cls.__name__}(")
    # Rebuilding from the parameters gives an equivalent detector.
    assert detector_cls(**detector.params()).params() == detector.params()
    assert detector_cls.name != Detector.name
    assert detector_cls.version != Detector.version
    assert isinstance(detector_cls.name, str)
    assert isinstance(detector_cls.version, str)
    assert isinstance(detector_cls.alarm_policy, AlarmPolicy)  # alarm hygiene's settings


def test_the_sweep_capability_is_declared_exactly_when_implemented(
        detector_cls: type[Detector]) -> None:
    """Pipelines sweep only the detectors that declare ``sweeps``: one that implemented
    ``sweep`` without declaring it would never be swept, and the reverse would sweep the
    default, which says nothing."""
    assert isinstance(detector_cls.sweeps, bool)
    assert detector_cls.sweeps == (detector_cls.sweep is not Detector.sweep)


def test_sweeps_speak_only_for_detectors_that_declare_them(detector_cls: type[Detector],
                                                           kind: AssetKind) -> None:
    detector = detector_cls()
    state = detector.new_state()
    said = []
    for message in stream_for(kind, 20):
        outcome = step(detector, state, message)
        if message[1] == "sweep":
            said.append(outcome[1] is not None)
    assert said, "the stream passes sweep boundaries"
    # A sweeping detector is exercised by the stream; the default sweep says nothing.
    assert any(said) if detector_cls.sweeps else not any(said)


def test_state_is_small_json_that_round_trips(detector_cls: type[Detector],
                                              kind: AssetKind) -> None:
    detector = detector_cls()
    fresh = detector.new_state()
    assert isinstance(fresh, dict)
    assert json.loads(json.dumps(fresh)) == fresh
    state, _ = feed(detector, kind, days=60)
    text = json.dumps(state, allow_nan=False)
    assert json.loads(text) == state
    assert len(text.encode()) < 16 * 1024, len(text)


def test_state_stays_small_for_a_car_reporting_every_minute(detector_cls: type[Detector],
                                                            kind: AssetKind) -> None:
    detector = detector_cls()
    state = detector.new_state()
    for m in stream_for(kind, 8, parked_interval_s=60, parked_days=set(range(2, 8))):
        step(detector, state, m)
    assert len(json.dumps(state).encode()) < 16 * 1024


def test_state_changed_is_reported_exactly_when_the_state_changes(
        detector_cls: type[Detector], kind: AssetKind) -> None:
    """The worker writes a changelog record only when told: a silent change would be lost."""
    detector = detector_cls()
    state = detector.new_state()
    for message in stream_for(kind, 20):
        before = copy.deepcopy(state)
        changed, _ = step(detector, state, message)
        assert changed == (state != before), message


def test_assessments_are_well_formed(detector_cls: type[Detector], kind: AssetKind) -> None:
    _, outcomes = feed(detector_cls(), kind)
    for _, assessment in outcomes:
        if assessment is None:
            continue
        assert assessment.severity in SEVERITIES
        json.dumps(assessment.evidence, allow_nan=False)  # plain, finite JSON
        assert assessment.predicted_failure_ts is None or isinstance(
            assessment.predicted_failure_ts, int)
        if assessment.abstain_reason is None:
            assert assessment.title
            assert assessment.recommended_action or not assessment.active
        for value in assessment.evidence.values():
            assert not (isinstance(value, float) and not math.isfinite(value))


def test_deterministic(detector_cls: type[Detector], kind: AssetKind) -> None:
    assert feed(detector_cls(), kind) == feed(detector_cls(), kind)


def test_never_reads_the_wall_clock(detector_cls: type[Detector], kind: AssetKind,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    expected = feed(detector_cls(), kind)

    def no_clock() -> float:
        raise AssertionError("detectors must use event time, not the wall clock")

    for name in ("time", "monotonic", "time_ns", "monotonic_ns", "perf_counter"):
        monkeypatch.setattr(time, name, no_clock)
    assert feed(detector_cls(), kind) == expected


def test_resuming_from_a_serialised_state_gives_the_same_results(
        detector_cls: type[Detector], kind: AssetKind) -> None:
    """What a worker restart does: state restored from the changelog (JSON) mid-stream."""
    straight = detector_cls()
    samples = list(stream_for(kind, 30))
    state = straight.new_state()
    expected = [step(straight, state, m) for m in samples]
    resumed = detector_cls()
    state = resumed.new_state()
    got = []
    for i, m in enumerate(samples):
        if i % (len(samples) // 5) == 0:
            state = json.loads(json.dumps(state))
        got.append(step(resumed, state, m))
    assert got == expected
