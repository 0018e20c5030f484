"""One contract, run over every detector in the registry (River-style streaming interface)."""

from __future__ import annotations

import inspect
import json
import time

import pytest

from diagnostics.base import Assessment, Detector
from diagnostics.registry import DETECTORS
from tests.unit.battery_series import series, weakening


def feed(detector: Detector, days: int = 30) -> tuple[dict[str, object], list[Assessment]]:
    state = detector.new_state()
    out = []
    for ts, signals in series(days, weakening(12.7, 0.02), seed=7):
        _, assessment = detector.update(state, ts, signals)
        if assessment is not None:
            out.append(assessment)
    return state, out


@pytest.fixture(params=sorted(DETECTORS))
def detector_cls(request: pytest.FixtureRequest) -> type[Detector]:
    return DETECTORS[request.param]


def test_parameters_are_stored_under_their_constructor_names(detector_cls: type[Detector]
                                                             ) -> None:
    detector = detector_cls()
    names = [p for p in inspect.signature(detector_cls.__init__).parameters if p != "self"]
    assert names, "a detector documents its parameters in its constructor"
    for name in names:
        assert hasattr(detector, name), name
    assert detector.params() == {n: getattr(detector, n) for n in names}
    assert detector_cls.name != Detector.name and detector_cls.version != Detector.version


def test_state_is_small_json_that_round_trips(detector_cls: type[Detector]) -> None:
    detector = detector_cls()
    assert json.loads(json.dumps(detector.new_state())) == detector.new_state()
    state, _ = feed(detector, days=60)
    text = json.dumps(state)
    assert json.loads(text) == state
    assert len(text.encode()) < 16 * 1024, len(text)


def test_deterministic(detector_cls: type[Detector]) -> None:
    assert feed(detector_cls()) == feed(detector_cls())


def test_never_reads_the_wall_clock(detector_cls: type[Detector],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    expected = feed(detector_cls())

    def no_clock() -> float:
        raise AssertionError("detectors must use event time, not the wall clock")

    for name in ("time", "monotonic", "time_ns", "perf_counter"):
        monkeypatch.setattr(time, name, no_clock)
    assert feed(detector_cls()) == expected


def test_resuming_from_a_serialised_state_gives_the_same_results(
        detector_cls: type[Detector]) -> None:
    """What a worker restart does: state restored from the changelog (JSON) mid-stream."""
    samples = list(series(30, weakening(12.7, 0.03), seed=3))
    straight = detector_cls()
    state = straight.new_state()
    expected = [straight.update(state, ts, s)[1] for ts, s in samples]
    resumed = detector_cls()
    state = resumed.new_state()
    got = []
    for i, (ts, s) in enumerate(samples):
        if i == len(samples) // 2:
            state = json.loads(json.dumps(state))
        got.append(resumed.update(state, ts, s)[1])
    assert got == expected
