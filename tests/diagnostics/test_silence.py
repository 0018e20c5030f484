"""Silence detection (diagnostics.silence) on hand-built report streams, without brokers."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from diagnostics.charger_silence import ChargerSilencePipeline
from diagnostics.offline import OfflineDiagnostics
from diagnostics.pipeline import VehiclePipeline, position_key, sweep_key
from diagnostics.silence import SWEEP_INTERVAL_MS, ChargerSilence, Silence, new_clock, sweep_due

T0 = 1_767_571_200_000
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def feed(detector: Silence, times: list[int]) -> dict[str, Any]:
    state = detector.new_state()
    for ts in times:
        detector.report(state, ts)
    return state


def every(start: int, step: int, until: int, drop: set[int] | None = None) -> list[int]:
    return [t for i, t in enumerate(range(start, until, step)) if i not in (drop or set())]


def active(detector: Silence, state: dict[str, Any], ts: int) -> bool:
    _, assessment = detector.sweep(state, ts)
    return assessment is not None and assessment.active and assessment.abstain_reason is None


def test_a_car_parked_for_days_reporting_every_half_hour_never_alerts() -> None:
    detector = Silence()
    times = every(T0, 30 * MIN, T0 + 6 * DAY)
    state = detector.new_state()
    for ts in times:
        detector.report(state, ts)
        assert not active(detector, state, ts + 29 * MIN)


def test_lost_messages_do_not_alert_but_a_stopped_car_does_within_hours() -> None:
    detector = Silence()
    # Three reports in a row lost (2 h without news): ordinary on a mobile link.
    state = feed(detector, every(T0, 30 * MIN, T0 + 2 * DAY, drop={40, 41, 42}))
    last = state["last"]
    assert not active(detector, state, last + 2 * HOUR)
    # Learned: 4 x the 2 h gap, decayed over the day since (half-life 14 days).
    threshold = detector.threshold_ms(state, last)
    assert 7.5 * HOUR < threshold < 8 * HOUR
    assert not active(detector, state, last + int(threshold))
    _, assessment = detector.sweep(state, last + int(threshold) + 15 * MIN)
    assert assessment is not None
    assert assessment.active
    assert assessment.severity == "warning"
    assert assessment.evidence["last_report_ts"] == last
    assert assessment.evidence["threshold_hours"] == round(threshold / HOUR, 2)
    assert assessment.recommended_action
    _, later = detector.sweep(state, last + 25 * HOUR)
    assert later is not None
    assert later.severity == "critical"


def test_a_clean_half_hour_pattern_alerts_after_the_three_hour_floor() -> None:
    detector = Silence()
    state = feed(detector, every(T0, 30 * MIN, T0 + DAY))
    last = state["last"]
    assert not active(detector, state, last + 3 * HOUR)
    assert active(detector, state, last + 3 * HOUR + 1)


def test_a_deep_sleep_pattern_is_learned_and_not_mistaken_for_silence() -> None:
    """A car that, parked, wakes only every 6 h: 6 h gaps are its normal pattern."""
    detector = Silence()
    state = feed(detector, every(T0, 6 * HOUR, T0 + 5 * DAY))
    last = state["last"]
    assert not active(detector, state, last + 12 * HOUR)
    assert not active(detector, state, last + 24 * HOUR)  # 4 x 6 h
    assert active(detector, state, last + 24 * HOUR + 1)


def test_abstains_before_the_pattern_is_known() -> None:
    detector = Silence(min_gaps=3)
    state = feed(detector, [T0, T0 + 30 * MIN])
    changed, assessment = detector.sweep(state, T0 + DAY)
    assert not changed
    assert assessment is not None
    assert assessment.abstain_reason is not None


def test_report_after_a_silence_resolves_and_learns_the_gap_only_up_to_the_threshold() -> None:
    detector = Silence()
    state = feed(detector, every(T0, 30 * MIN, T0 + DAY))
    last = state["last"]
    changed, assessment = detector.report(state, last + 3 * DAY)
    assert changed
    assert assessment is not None
    assert not assessment.active
    assert assessment.evidence["silent_hours"] == 72.0
    # The 3-day outage is learned as a 3 h gap (the threshold), not as 3 days.
    assert state["gap"] == 3 * HOUR
    assert detector.threshold_ms(state, state["last"]) == 12 * HOUR


def test_a_car_reporting_every_second_costs_a_state_write_per_quantum() -> None:
    detector = Silence(quantum_s=600)
    state = detector.new_state()
    writes = sum(detector.report(state, T0 + i * 1000)[0] for i in range(3600))
    assert writes == 1 + 5  # the first report, then one per 10 minutes


def test_late_messages_change_nothing() -> None:
    detector = Silence()
    state = feed(detector, every(T0, 30 * MIN, T0 + DAY))
    before = json.dumps(state)
    assert detector.report(state, T0 + HOUR) == (False, None)
    assert json.dumps(state) == before


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="floor_s"):
        Silence(floor_s=0)


def test_a_charger_s_silence_has_the_car_s_rules_and_the_charger_s_words() -> None:
    assert ChargerSilence().params() == Silence().params()
    assert (ChargerSilence.name, ChargerSilence.version) == (Silence.name, Silence.version)
    state = feed(ChargerSilence(), every(T0, 30 * MIN, T0 + DAY))
    _, assessment = ChargerSilence().sweep(state, T0 + 2 * DAY)
    assert assessment is not None
    assert assessment.title == "Charger has stopped reporting"


def test_the_charger_silence_pipeline_runs_one_detector() -> None:
    assert isinstance(ChargerSilencePipeline().detector, ChargerSilence)
    assert ChargerSilencePipeline().alert_type == "charger_silent"
    with pytest.raises(ValueError, match="exactly one"):
        ChargerSilencePipeline({"a": ChargerSilence(), "b": ChargerSilence()})


def test_sweeps_happen_once_per_boundary_of_event_time() -> None:
    clock = new_clock()
    assert sweep_due(clock, T0 + 1) is None  # the first boundary: nothing to compare with
    assert sweep_due(clock, T0 + 5 * MIN) is None
    assert sweep_due(clock, T0 + SWEEP_INTERVAL_MS) == (T0, T0 + SWEEP_INTERVAL_MS)
    assert sweep_due(clock, T0 + SWEEP_INTERVAL_MS + 1) is None
    assert sweep_due(clock, T0 + 1) is None  # a late record does not move the clock back
    # The watermark jumped over several boundaries: one span, every boundary of it due.
    assert sweep_due(clock, T0 + 10 * SWEEP_INTERVAL_MS + 7) == (T0 + SWEEP_INTERVAL_MS,
                                                                 T0 + 10 * SWEEP_INTERVAL_MS)


def test_a_silence_sweeps_where_its_answer_changes_and_at_the_span_end() -> None:
    detector = Silence()
    state = detector.new_state()
    for i in range(5):
        detector.report(state, T0 + i * HOUR)  # hourly: learned gap 1 h, threshold 4 h
    last = T0 + 4 * HOUR
    since, upto = T0 + 4 * HOUR, T0 + 4 * HOUR + 2 * DAY
    assert detector.sweep_times(state, since, upto, SWEEP_INTERVAL_MS) == [
        since + SWEEP_INTERVAL_MS,  # resolves an alert a late report left open
        last + 4 * HOUR + SWEEP_INTERVAL_MS,  # silent: strictly past the threshold
        last + DAY,  # critical: at the critical age
        upto]
    # Only the boundaries inside the span: a later span has nothing new to say but its end.
    assert detector.sweep_times(state, upto, upto + HOUR, SWEEP_INTERVAL_MS) == [
        upto + SWEEP_INTERVAL_MS, upto + HOUR]


def batched(records: list[dict[str, Any]], cuts: list[int]) -> list[dict[str, Any]]:
    """``records`` through the worker's step (``process_source``) in Kafka records ending at
    ``cuts`` (as the bridge happened to batch them)."""
    pipeline = VehiclePipeline({"vehicle_silent": Silence()})
    table: dict[str, Any] = {}
    alerts: list[dict[str, Any]] = []
    bounds = sorted({c for c in cuts if 0 < c < len(records)} | {len(records)})
    for offset, (start, end) in enumerate(zip([0, *bounds], bounds, strict=False)):
        new, writes = pipeline.process_source(table, 0, offset, records[start:end])
        alerts += new
        table.update(writes)
    return alerts


@settings(max_examples=60, deadline=None)
@given(silent_h=st.integers(20, 60), back_h=st.one_of(st.none(), st.integers(1, 40)),
       cuts=st.lists(st.integers(0, 10_000), max_size=12))
@example(silent_h=20, back_h=2, cuts=[])  # a 2.5 h gap: under the threshold
@example(silent_h=20, back_h=3, cuts=[])  # a 3.5 h gap: over it
def test_the_alerts_do_not_depend_on_how_the_stream_was_batched(
        silent_h: int, back_h: int | None, cuts: list[int]) -> None:
    silent_from = T0 + silent_h * HOUR
    records = two_cars(silent_from, None if back_h is None else silent_from + back_h * HOUR)
    diagnostics = OfflineDiagnostics(VehiclePipeline({"vehicle_silent": Silence()}))
    one_by_one = [a for r in records for a in diagnostics.process([r])]
    # B's last report before the silence is 30 min before ``silent_from`` and its threshold
    # is the 3 h floor (4 x its 30 min gaps is less): back after 3 h or more is a gap of at
    # least 3.5 h, past the threshold at a 15-min sweep boundary; back after 2 h is 2.5 h.
    assert any(a["asset_id"] == "B" for a in one_by_one) == (back_h is None or back_h >= 3)
    assert batched(records, [c % len(records) for c in cuts]) == one_by_one


def telemetry(vin: str, ts: int, seq: int) -> dict[str, Any]:
    return {"kind": "vehicle_telemetry", "id": vin, "ts": ts, "seq": seq,
            "data": {"signals": {"Vehicle.Speed": 0.0}}}


def two_cars(silent_from: int, back_at: int | None) -> list[dict[str, Any]]:
    """Car A reports every 30 min throughout; car B the same, except from ``silent_from`` until
    ``back_at`` (None: never again)."""
    records = []
    for i, ts in enumerate(range(T0, T0 + 3 * DAY, 30 * MIN)):
        records.append(telemetry("A", ts + 7 * MIN, i))
        if ts < silent_from or (back_at is not None and ts >= back_at):
            records.append(telemetry("B", ts + 11 * MIN, i))
    return sorted(records, key=lambda r: r["ts"])


def run_offline(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    diagnostics = OfflineDiagnostics(VehiclePipeline({"vehicle_silent": Silence()}))
    alerts = [a for r in records for a in diagnostics.process([r])]
    return alerts + diagnostics.finish(records[-1]["ts"] + 1)


def test_the_fleet_clock_finds_the_silent_car_and_its_return_resolves_the_alert() -> None:
    silent_from, back_at = T0 + DAY, T0 + DAY + 12 * HOUR
    alerts = run_offline(two_cars(silent_from, back_at))
    assert [(a["asset_id"], a["status"]) for a in alerts] == [("B", "open"), ("B", "resolved")]
    opened, resolved = alerts
    last_report = silent_from - 30 * MIN + 11 * MIN
    # The first boundary after the 3 h threshold, although car A's reports every 30 min (the
    # only clock) pass two boundaries at a time.
    assert opened["first_seen"] % SWEEP_INTERVAL_MS == 0
    assert last_report + 3 * HOUR < opened["first_seen"] <= (last_report + 3 * HOUR
                                                             + SWEEP_INTERVAL_MS)
    assert opened["type"] == "vehicle_silent"
    assert opened["asset_kind"] == "vehicle"
    assert resolved["id"] == opened["id"]
    assert resolved["last_seen"] == back_at + 11 * MIN
    assert run_offline(two_cars(silent_from, back_at)) == alerts  # a replay: same alerts


@pytest.mark.parametrize("restart_at", [None, 30, 77])
def test_the_worker_step_sweeps_its_partition_and_survives_a_restart(
        restart_at: int | None) -> None:
    """``process_source`` (what the ``diagnose`` agent runs) over Kafka records of 5 records:
    the same alerts as the offline run, with a restart from the table (JSON) at
    ``restart_at``; the sweep clock is written before the position."""
    records = two_cars(T0 + DAY, T0 + DAY + 12 * HOUR)
    batches = [records[i:i + 5] for i in range(0, len(records), 5)]
    pipeline = VehiclePipeline({"vehicle_silent": Silence()})
    table: dict[str, Any] = {}
    alerts: list[dict[str, Any]] = []
    for offset, batch in enumerate(batches):
        if offset == restart_at:
            pipeline, table = (VehiclePipeline({"vehicle_silent": Silence()}),
                               json.loads(json.dumps(table)))
        new, writes = pipeline.process_source(table, 3, offset, batch)
        alerts += new
        keys = list(writes)
        assert keys[-1] == position_key(3)
        if sweep_key(3) in keys:
            assert keys.index(sweep_key(3)) == len(keys) - 2
        table.update(writes)
    assert [(a["asset_id"], a["status"]) for a in alerts] == [("B", "open"), ("B", "resolved")]
    assert table["A"]["part"] == table["B"]["part"] == 3


def test_a_car_silent_for_good_gets_one_alert_escalated_once() -> None:
    alerts = run_offline(two_cars(T0 + 12 * HOUR, None))
    assert [(a["status"], a["severity"]) for a in alerts] == [("open", "warning"),
                                                              ("open", "critical")]
    assert len({a["id"] for a in alerts}) == 1


def charger_status(cid: str, ts: int, seq: int, kind: str = "charger_status") -> dict[str, Any]:
    data: dict[str, Any] = ({"connectorId": 1, "status": "Available", "errorCode": "NoError"}
                            if kind == "charger_status" else
                            {"connectorId": 1, "measurands": {"Power.Active.Import": 11000.0}})
    return {"kind": kind, "id": cid, "ts": ts, "seq": seq, "data": data}


def charger_records() -> list[dict[str, Any]]:
    """Three chargers heartbeating every 30 min for two days; CP-2 busy in an 8 h session
    (meter values every minute, no heartbeat) on day 2; CP-3 dead from day 2 on."""
    records = []
    seq = 0
    for ts in range(T0, T0 + 2 * DAY, 30 * MIN):  # heartbeats while idle
        for cid in ("CP-1", "CP-2", "CP-3"):
            busy = cid == "CP-2" and T0 + DAY <= ts < T0 + DAY + 8 * HOUR
            dead = cid == "CP-3" and ts >= T0 + DAY
            if dead:
                continue
            seq += 1
            if busy:  # an 8 h session: meter values every minute, no heartbeat needed
                records += [charger_status(cid, ts + k * MIN, seq, "charger_meter")
                            for k in range(30)]
            else:
                records.append(charger_status(cid, ts, seq))
    return sorted(records, key=lambda r: r["ts"])


def test_a_charger_busy_in_a_long_session_is_not_silent_and_a_dead_one_is() -> None:
    pipeline = ChargerSilencePipeline()
    states: dict[str, Any] = {}
    alerts = [a for r in charger_records() for a in pipeline.process([r], states)[0]]
    # One alert: a warning, escalated to critical after a day of silence.
    assert [(a["asset_id"], a["type"], a["status"], a["severity"]) for a in alerts] == [
        ("CP-3", "charger_silent", "open", "warning"),
        ("CP-3", "charger_silent", "open", "critical")]
    assert alerts[0]["asset_kind"] == "charger"
    assert alerts[0]["id"] == alerts[1]["id"]
    assert T0 + DAY + 2 * HOUR < alerts[0]["first_seen"] <= T0 + DAY + 2 * HOUR + 45 * MIN


@pytest.mark.parametrize("restart_at", [None, 40, 150, 233])
def test_the_worker_step_for_chargers_survives_a_restart_with_the_same_alerts(
        restart_at: int | None) -> None:
    """``process_source`` over Kafka records of 10 charger records each; at ``restart_at`` the
    worker restarts from its table (JSON, as the changelog gives it back)."""
    records = charger_records()
    batches = [records[i:i + 10] for i in range(0, len(records), 10)]
    pipeline = ChargerSilencePipeline()
    table: dict[str, Any] = {}
    alerts: list[dict[str, Any]] = []
    for offset, batch in enumerate(batches):
        if offset == restart_at:
            pipeline, table = ChargerSilencePipeline(), json.loads(json.dumps(table))
        new, writes = pipeline.process_source(table, 0, offset, batch)
        alerts += new
        assert list(writes)[-1] == position_key(0)
        table.update(writes)
    assert [(a["asset_id"], a["status"], a["severity"]) for a in alerts] == [
        ("CP-3", "open", "warning"), ("CP-3", "open", "critical")]
    assert sweep_key(0) in table
    assert table["CP-1"]["part"] == 0


# ---------------------------------------------------------------- properties

gaps = st.lists(st.integers(1, 4 * 3600), min_size=4, max_size=50)  # at most 8.3 days


@settings(max_examples=150, deadline=None)
@given(gaps=gaps, probes=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5))
def test_never_alerts_while_the_gap_is_within_the_learned_pattern(
        gaps: list[int], probes: list[float]) -> None:
    """Within 10 days the learned gap decays to no less than 60 % of the longest gap seen,
    and the factor is 4: a silence as long as any gap seen so far is never an alert."""
    detector = Silence()
    state = detector.new_state()
    ts = T0
    detector.report(state, ts)
    longest = 0
    for gap_s in gaps:
        ts += gap_s * 1000
        detector.report(state, ts)
        longest = max(longest, gap_s * 1000)
        assert ts - T0 < 10 * DAY
        for p in probes:
            assert not active(detector, state, state["last"] + int(p * longest))


@settings(max_examples=100, deadline=None)
@given(gaps=gaps, sweeps=st.lists(st.integers(0, 60 * 3600), max_size=10),
       cut=st.floats(0.0, 1.0))
def test_same_input_same_output_even_across_a_restart(gaps: list[int], sweeps: list[int],
                                                      cut: float) -> None:
    detector = Silence()

    def run(restart_at: int | None) -> list[Any]:
        state = detector.new_state()
        out: list[Any] = []
        ts = T0
        for i, gap_s in enumerate(gaps):
            if i == restart_at:
                state = json.loads(json.dumps(state))  # what the changelog gives back
            ts += gap_s * 1000
            out.append(detector.report(state, ts))
            out += [detector.sweep(state, ts + s * 1000) for s in sweeps]
        return out

    assert run(None) == run(None) == run(round(cut * len(gaps)))


def test_a_random_half_hour_stream_with_losses_never_alerts() -> None:
    """Thirty days of a car's 30-minute reports, each lost with 5 % (ten times the
    simulator's rate), swept every 15 minutes."""
    rng = random.Random(5)
    detector = Silence()
    state = detector.new_state()
    sweep = T0
    for ts in range(T0, T0 + 30 * DAY, 30 * MIN):
        while sweep < ts:
            assert not active(detector, state, sweep)
            sweep += SWEEP_INTERVAL_MS
        if rng.random() >= 0.05:
            detector.report(state, ts)
