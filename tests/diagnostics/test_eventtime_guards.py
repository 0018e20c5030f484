"""One hostile record (ts far ahead or far back, a huge seq) against a stream of valid ones:
it cannot move the partition's sweep clock, raise other cars' silence, or make its sender's
next messages look like duplicates."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.pipeline import MAX_SEQ_JUMP, VehiclePipeline, sweep_key
from diagnostics.silence import CLOCK_LEAD_MS, SWEEP_INTERVAL_MS, Silence, Watermark, new_clock

T0 = 1_767_571_200_000  # 2026-01-05T00:00Z
MIN = 60_000
YEAR = 365 * 24 * 60 * MIN
SEQ_MAX = 2**63 - 1


def telemetry(vin: str, ts: int, seq: int) -> dict[str, Any]:
    return {"kind": "vehicle_telemetry", "id": vin, "ts": ts, "seq": seq,
            "data": {"signals": {"Vehicle.Speed": 0.0}}}


@st.composite
def fleets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Three to six cars over two days, each every 10 to 60 min, some stopping for good."""
    cars = draw(st.integers(3, 6))
    records = []
    for c in range(cars):
        every = draw(st.sampled_from([10, 20, 30, 60])) * MIN
        offset = draw(st.integers(0, 9)) * MIN
        stop = draw(st.one_of(st.none(), st.integers(6, 40))) if c else None  # car 0 keeps on
        first_seq = draw(st.integers(0, 10_000))
        for i, ts in enumerate(range(T0 + offset, T0 + 2 * 24 * 60 * MIN, every)):
            if stop is not None and ts >= T0 + stop * 60 * MIN:
                break
            records.append(telemetry(f"CAR{c}", ts, first_seq + i))
    return sorted(records, key=lambda r: (r["ts"], r["id"]))


HOSTILE = st.sampled_from(["future", "future_seq_max", "seq_max", "past", "past_seq_max"])


def hostile_record(kind: str, sender: dict[str, Any]) -> dict[str, Any]:
    """A contract-valid record of ``sender``'s car (the record it follows in the stream)."""
    ts, seq = int(sender["ts"]), int(sender["seq"])
    hostile_ts = {"future": ts + 70 * YEAR, "future_seq_max": ts + 70 * YEAR,
                  "seq_max": ts, "past": ts - 20 * YEAR, "past_seq_max": ts - 20 * YEAR}[kind]
    # "future" keeps a plausible seq (one the device has already used): only its ts lies.
    hostile_seq = SEQ_MAX if kind.endswith("seq_max") or kind == "seq_max" else seq
    return telemetry(str(sender["id"]), hostile_ts, hostile_seq)


def run_worker(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any],
                                                       VehiclePipeline]:
    """The worker's step per record on one partition, the table kept in a dict."""
    pipeline = VehiclePipeline({"vehicle_silent": Silence()})
    table: dict[str, Any] = {}
    alerts: list[dict[str, Any]] = []
    for offset, record in enumerate(records):
        new_alerts, writes = pipeline.process_source(table, 0, offset, [record])
        alerts += new_alerts
        table.update(writes)
    return alerts, table, pipeline


def verdicts(alerts: list[dict[str, Any]], sender: str) -> list[tuple[Any, ...]]:
    return [(a["asset_id"], a["status"], a["severity"], a["first_seen"], a["last_seen"])
            for a in alerts if a["asset_id"] != sender]


@settings(max_examples=25, deadline=None)
@given(fleet=fleets(), at=st.floats(0.05, 0.95), kind=HOSTILE)
def test_one_hostile_record_moves_no_clock_and_hides_no_message(
        fleet: list[dict[str, Any]], at: float, kind: str) -> None:
    cut = round(at * (len(fleet) - 1))
    sender = fleet[cut]
    hostile = hostile_record(kind, sender)
    attacked = [*fleet[:cut + 1], hostile, *fleet[cut + 1:]]
    alerts, table, pipeline = run_worker(fleet)
    attacked_alerts, attacked_table, attacked_pipeline = run_worker(attacked)
    # (a) every other car's silence verdicts are those of the stream without it
    assert verdicts(attacked_alerts, sender["id"]) == verdicts(alerts, sender["id"])
    # (b) none of the sender's later messages is taken for a duplicate (nor is anything else;
    # a backdated record with a seq already seen is itself one, rightly)
    assert pipeline.duplicates == 0
    assert attacked_pipeline.duplicates == (1 if kind == "past" else 0)
    # (c) the partition's clock stays within the lead of the valid records' newest time
    newest = max(int(r["ts"]) for r in fleet)
    assert attacked_table[sweep_key(0)]["swept"] <= newest + CLOCK_LEAD_MS
    assert attacked_table[sweep_key(0)]["swept"] == table[sweep_key(0)]["swept"]


@settings(max_examples=25, deadline=None)
@given(fleet=fleets(), at=st.floats(0.05, 0.95), kind=HOSTILE)
def test_the_offline_pipeline_is_guarded_alike(
        fleet: list[dict[str, Any]], at: float, kind: str) -> None:
    """The in-memory path (evaluation, back-tests): process, then advance the clock."""
    cut = round(at * (len(fleet) - 1))
    sender = fleet[cut]
    attacked = [*fleet[:cut + 1], hostile_record(kind, sender), *fleet[cut + 1:]]

    def run(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
        pipeline = VehiclePipeline({"vehicle_silent": Silence()})
        states: dict[str, Any] = {}
        clock = new_clock()
        alerts = []
        for record in records:
            alerts += pipeline.process([record], states)[0]
            span = pipeline.advance_clock(clock, [record])
            if span is not None:
                alerts += pipeline.sweep(states.items(), span)[0]
        return alerts, pipeline.duplicates, clock

    alerts, _, clock = run(fleet)
    attacked_alerts, duplicates, attacked_clock = run(attacked)
    assert verdicts(attacked_alerts, sender["id"]) == verdicts(alerts, sender["id"])
    assert duplicates == (1 if kind == "past" else 0)
    assert attacked_clock["swept"] == clock["swept"]


def test_a_resumed_fleet_moves_the_clock_once_two_cars_agree() -> None:
    clock = new_clock()
    watermark = Watermark(clock)
    assert watermark.report("A", T0) is False  # nothing to compare with yet
    assert watermark.report("B", T0 + 5 * MIN) is True
    assert watermark.sweep_at() is None  # the first boundary is not swept
    later = T0 + 3 * 24 * 60 * MIN  # the fleet resumes three days later
    watermark = Watermark(clock)
    assert watermark.report("A", later) is False
    assert watermark.report("X", later + 10 * YEAR) is False  # a lone clock far ahead
    assert watermark.report("B", later + 7 * MIN) is True
    assert watermark.sweep_at() == (T0 + 5 * MIN - (T0 + 5 * MIN) % SWEEP_INTERVAL_MS,
                                    later + 7 * MIN - (later + 7 * MIN) % SWEEP_INTERVAL_MS)
    # X's time stays held, alone: it never confirms anything by itself
    assert clock["ahead"] == [["X", later + 10 * YEAR]]


def test_a_car_that_once_sent_a_time_far_ahead_still_vouches_for_its_next_reports() -> None:
    """Two cars left, reporting hourly (beyond the lead, so each report waits for the other's).
    A's one record 70 years ahead must not stand for A from then on: its next real report is
    what A holds, or B's hourly reports would never find a partner and the clock would stop
    (every silence in the partition unseen)."""
    clock = new_clock()
    watermark = Watermark(clock)
    watermark.report("A", T0)
    assert watermark.report("B", T0) is True
    assert watermark.report("A", T0 + 70 * YEAR) is False
    assert watermark.sweep_at() is None  # the first boundary is not swept
    for hour in (1, 2, 3):
        watermark = Watermark(clock)
        assert watermark.report("A", T0 + hour * 60 * MIN) is False  # ahead: held
        assert watermark.report("B", T0 + hour * 60 * MIN) is True
        assert watermark.sweep_at() is not None
        assert clock["swept"] == T0 + hour * 60 * MIN


def test_within_the_lead_one_car_moves_the_clock_and_no_further() -> None:
    clock = new_clock()
    watermark = Watermark(clock)
    watermark.report("A", T0)
    watermark.report("B", T0)
    assert watermark.report("A", T0 + SWEEP_INTERVAL_MS + CLOCK_LEAD_MS) is True
    assert watermark.report("A", T0 + 2 * SWEEP_INTERVAL_MS + CLOCK_LEAD_MS + 1) is True
    watermark = Watermark(clock)
    assert watermark.report("A", T0 + 10 * CLOCK_LEAD_MS) is False


def test_a_huge_seq_jump_is_believed_only_when_the_next_seq_continues_from_it() -> None:
    pipeline = VehiclePipeline({"vehicle_silent": Silence()})
    states: dict[str, Any] = {}
    pipeline.process([telemetry("A", T0, 5)], states)
    pipeline.process([telemetry("A", T0 + MIN, SEQ_MAX)], states)
    assert states["A"]["seq"] == 5
    pipeline.process([telemetry("A", T0 + 2 * MIN, 6)], states)  # the device's own next one
    assert (states["A"]["seq"], pipeline.duplicates) == (6, 0)
    # A counter that really jumped (a replaced unit): its next message makes the jump the mark.
    jump = 6 + MAX_SEQ_JUMP + 1
    pipeline.process([telemetry("A", T0 + 3 * MIN, jump)], states)
    pipeline.process([telemetry("A", T0 + 4 * MIN, jump + 1)], states)
    assert states["A"]["seq"] == jump + 1
    pipeline.process([telemetry("A", T0 + 4 * MIN, jump + 1)], states)  # redelivered
    assert pipeline.duplicates == 1
