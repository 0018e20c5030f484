"""Daily health indicators for the vehicle health card (pure: no I/O, event time only).

The health card shows how the numbers the detectors judge have moved day by day: the 12 V
battery's resting voltage and the charge it gives while parked, the four tyre pressures, the
traction battery's cell spread (``CellVoltage.Max - CellVoltage.Min``) and its state of
health. The worker's latest-values flush hands every decoded record here as well
(``DailyIndicators.add``) and writes what ``drain`` returns with one extra statement per
flush (``Store.upsert_daily_indicators``).

Every numeric signal (any VSS path, standard or from an overlay, whose value is a number) gets
a daily trend of its own too, keyed by its full path (``Vehicle.Speed``), so whatever a car
reports can be followed day by day without a named indicator for it. Those aggregate as the
records arrive (a few numbers per vehicle, day and signal, not the readings), so a flush's
memory follows the fleet and its signals, not its message rate.

Each row is a mergeable aggregate of one (vehicle, UTC day of the event time, indicator):
``n, min, max, sum, last, last_ts``. Aggregates of any split of the readings merge into the
aggregate of all of them (``DayAggregate.merge``, and the database upsert does the same), so
the flush interval does not change the result. Redelivery after a crash is the exception: a
replayed reading is counted again in ``n`` and ``sum`` (so the mean may drift by the replayed
share of a day), while ``min``, ``max`` and ``last`` stay exact because merging a reading twice
does not change them.

Resting 12 V voltage
--------------------
"Resting" is the 12 V detector's definition (``diagnostics/battery12v.py``), taken from the
detector itself rather than re-derived: the car is OFF (``Vehicle.LowVoltageSystemState`` or
ignition events), at least ``rest_delay_s`` (4 h) have passed since key-off or the last
top-up, and the reading is not itself a top-up (``WeakBattery12V.is_top_up``). The indicator
is the raw terminal voltage of those readings; the detector's temperature-compensated V25
needs hours of filtered ambient history that lives only in its own state.

The key-off / top-up clock of each vehicle is kept in memory across flushes. After a worker
restart (or when a vehicle's partition moves to another worker) it is unknown until the next
key change, so resting readings of a car that stays parked through the restart are missed:
fewer points that day, never wrong ones.

12 V charge drawn while parked
------------------------------
The energy a parked car uses: what the 12 V battery gives its sleeping modules (the "dark" or
quiescent current), the number a software release that keeps a module awake changes first.
Each qualifying reading of ``Vehicle.LowVoltageBattery.CurrentCurrent`` (VSS sign: negative =
discharging) becomes a draw rate ``-current * 24`` in Ah per parked day, and the day's row
is their aggregate: the mean is the average draw while parked (readings come at a steady
parked interval, so the mean of readings is the time average). It is a rate per parked day,
not the charge drawn that calendar day, so cars that park for different lengths compare
fairly. A reading qualifies when the car is known to be OFF (the same key clock as above), at
least ``PARKED_SETTLE_S`` (30 min) after key-off or the last top-up (modules are still going
to sleep then, a normal higher draw), and the battery is not being charged: not a top-up
(``WeakBattery12V.is_top_up``), no positive current, and the traction battery not charging
(a real car's DC-DC and charging electronics are awake then, which is charging's cost, not a
parked car's). The traction battery's own state of charge is not used: it does not move
measurably while parked (and the simulator's bad release does not touch it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from diagnostics.battery12v import WeakBattery12V
from diagnostics.helpers import OFF_STATES, ON_STATES, as_number
from diagnostics.signals import (
    CELL_MAX,
    CELL_MIN,
    CHARGING,
    CURRENT,
    KEY_STATE,
    STATE_OF_HEALTH,
    VOLTAGE,
)
from ingest.contract import TIRE_PRESSURE_SIGNALS
from vocab.eventtime import DAY_MS

RESTING_12V: Final = "battery12v_resting_v"
CELL_SPREAD: Final = "cell_spread_v"
SOH: Final = "soh_percent"
PARKED_DRAW_12V: Final = "parked_12v_draw_ah_per_day"
PARKED_SETTLE_S: Final = 30 * 60


def _tire_indicator(path: str) -> str:
    # "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure" -> "tire_pressure_row1_left_kpa"
    parts = path.split(".")
    return f"tire_pressure_{parts[3].lower()}_{parts[5].lower()}_kpa"


TIRE_INDICATORS: Final[Mapping[str, str]] = {p: _tire_indicator(p) for p in TIRE_PRESSURE_SIGNALS}
INDICATORS: Final = (RESTING_12V, PARKED_DRAW_12V, *TIRE_INDICATORS.values(), CELL_SPREAD,
                     SOH)

# (asset_kind, asset_id, day, indicator, n, min, max, sum, last, last_ts)
# Every signal ``_readings`` looks at (the rest are dropped when a record is filed).
READ_SIGNALS: Final = (KEY_STATE, CURRENT, VOLTAGE, CHARGING, *TIRE_PRESSURE_SIGNALS,
                       CELL_MAX, CELL_MIN, STATE_OF_HEALTH)
IndicatorRow = tuple[str, str, str, str, int, float, float, float, float, int]


def utc_day(ts_ms: int) -> str:
    """The UTC calendar day of an event time, ISO ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ts_ms // DAY_MS * 86_400, UTC).date().isoformat()


@dataclass(slots=True)
class DayAggregate:
    """n, min, max, sum and the latest value (by event time) of one day's readings."""

    n: int
    min: float
    max: float
    sum: float
    last: float
    last_ts: int

    @classmethod
    def of(cls, value: float, ts_ms: int) -> DayAggregate:
        return cls(1, value, value, value, value, ts_ms)

    def add(self, value: float, ts_ms: int) -> None:
        self.n += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if ts_ms >= self.last_ts:  # a tie goes to the later arrival, as in ``merge``
            self.last, self.last_ts = value, ts_ms

    def merge(self, later: DayAggregate) -> DayAggregate:
        """This aggregate followed by ``later`` (the database upsert applies the same rule)."""
        newer = later.last_ts >= self.last_ts
        return DayAggregate(
            n=self.n + later.n, min=min(self.min, later.min), max=max(self.max, later.max),
            sum=self.sum + later.sum, last=later.last if newer else self.last,
            last_ts=later.last_ts if newer else self.last_ts)

    @property
    def mean(self) -> float:
        return self.sum / self.n


class DailyIndicators:
    """Collects readings between flushes; ``drain`` returns one aggregate row per
    (vehicle, day, indicator). Keeps each vehicle's rest clock across drains."""

    def __init__(self, battery: WeakBattery12V | None = None) -> None:
        self._battery = battery or WeakBattery12V()
        self._rest_delay_ms = self._battery.rest_delay_ms
        self._settle_ms = PARKED_SETTLE_S * 1000
        # vin -> [key on (None: unknown), rest start ms (None: not resting), last event ms]
        self._clocks: dict[str, list[Any]] = {}
        self._pending: dict[str, list[tuple[int, Mapping[str, Any], bool]]] = {}
        # (vin, day number) -> {path: [n, min, max, sum, last, last_ts]}
        self._signal_days: dict[tuple[str, int], dict[str, list[Any]]] = {}

    def add(self, records: Iterable[Mapping[str, Any]]) -> None:
        """File vehicle telemetry and ignition events (cheap: the work happens in drain)."""
        pending = self._pending
        for r in records:
            kind = r["kind"]
            if kind == "vehicle_telemetry":
                # Only the signals the indicators read: a flush holds every message of the
                # fleet until it drains, and the whole signal dicts would be most of the
                # worker's memory at 10 000 vehicles.
                signals = r["data"]["signals"]
                ts = int(r["ts"])
                self._add_signals(r["id"], ts, signals)
                entry = (ts, {k: signals[k] for k in READ_SIGNALS if k in signals}, False)
            elif kind == "vehicle_event" and r["data"].get("type") == "ignition":
                entry = (int(r["ts"]), r["data"], True)
            else:
                continue
            entries = pending.get(r["id"])
            if entries is None:
                pending[r["id"]] = entries = []
            entries.append(entry)

    def _add_signals(self, vin: str, ts: int, signals: Mapping[str, object]) -> None:
        """Fold every numeric signal of one message into its (vehicle, day, path) aggregate."""
        key = (vin, ts // DAY_MS)
        aggregates = self._signal_days.get(key)
        if aggregates is None:
            self._signal_days[key] = aggregates = {}
        for path, value in signals.items():
            kind = type(value)
            if kind is not float and kind is not int:  # booleans, strings, arrays: no trend
                continue
            agg = aggregates.get(path)
            if agg is None:
                aggregates[path] = [1, value, value, value, value, ts]
                continue
            agg[0] += 1
            agg[3] += value
            if value < agg[1]:
                agg[1] = value
            if value > agg[2]:
                agg[2] = value
            if ts >= agg[5]:  # a tie goes to the later arrival, as in ``merge``
                agg[4], agg[5] = value, ts

    def drain(self, signals: bool = True) -> list[IndicatorRow]:
        """The aggregates of everything added since the last drain, and forget it. With
        ``signals`` false the per-signal trends stay in memory for a later drain (they are
        one row per vehicle and signal however long they gather, so writing them less often
        than the named indicators costs memory, not rows)."""
        # The hot path of the flush (every record of the fleet): plain lists and inlined
        # updates instead of a DayAggregate per reading, with the same rules.
        days: dict[int, str] = {}
        rows: list[IndicatorRow] = []
        for vin, entries in self._pending.items():
            entries.sort(key=lambda e: e[0])  # event-time order for the rest clock; stable
            aggregates: dict[tuple[int, str], list[Any]] = {}
            for ts, data, is_event in entries:
                if is_event:
                    self._key(vin, ts, data.get("state"))
                    continue
                day = ts // DAY_MS
                for indicator, value in self._readings(vin, ts, data):
                    agg = aggregates.get((day, indicator))
                    if agg is None:
                        aggregates[(day, indicator)] = [1, value, value, value, value, ts]
                        continue
                    agg[0] += 1
                    agg[3] += value
                    if value < agg[1]:
                        agg[1] = value
                    if value > agg[2]:
                        agg[2] = value
                    if ts >= agg[5]:  # a tie goes to the later arrival, as in ``merge``
                        agg[4], agg[5] = value, ts
            for (day, indicator), (n, lo, hi, total, last, last_ts) in aggregates.items():
                iso = days.get(day)
                if iso is None:
                    days[day] = iso = utc_day(day * DAY_MS)
                rows.append(("vehicle", vin, iso, indicator, n, lo, hi, total, last, last_ts))
        self._pending = {}
        if not signals:
            return rows
        for (vin, day), by_path in self._signal_days.items():
            iso = days.get(day)
            if iso is None:
                days[day] = iso = utc_day(day * DAY_MS)
            for path, (n, lo, hi, total, last, last_ts) in by_path.items():
                rows.append(("vehicle", vin, iso, path, n, float(lo), float(hi), float(total),
                             float(last), last_ts))
        self._signal_days = {}
        return rows

    def forget_signal_trends(self) -> None:
        """Drop the per-signal aggregates not drained yet (their records are about to be
        added again)."""
        self._signal_days = {}

    def _readings(self, vin: str, ts: int, signals: Mapping[str, object]
                  ) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        key = signals.get(KEY_STATE)
        if key is not None:
            self._key(vin, ts, key)
        if CURRENT in signals:
            draw = self._parked_draw(vin, ts, signals)
            if draw is not None:
                out.append((PARKED_DRAW_12V, draw))
        if VOLTAGE in signals:
            resting = self._resting(vin, ts, signals)
            if resting is not None:
                out.append((RESTING_12V, resting))
        get = signals.get
        for path, indicator in TIRE_INDICATORS.items():
            value = get(path)
            if value is None:
                continue
            if type(value) is not float:  # the contract's floats are the common case
                value = as_number(value)
                if value is None:
                    continue
            out.append((indicator, value))
        if CELL_MAX in signals:
            hi, lo = as_number(get(CELL_MAX)), as_number(get(CELL_MIN))
            if hi is not None and lo is not None:
                out.append((CELL_SPREAD, round(hi - lo, 6)))
        if STATE_OF_HEALTH in signals:
            soh = as_number(get(STATE_OF_HEALTH))
            if soh is not None:
                out.append((SOH, soh))
        return out

    def _clock(self, vin: str) -> list[Any]:
        clock = self._clocks.get(vin)
        if clock is None:
            self._clocks[vin] = clock = [None, None, 0]
        return clock

    def _key(self, vin: str, ts: int, key: object) -> None:
        if key not in ON_STATES and key not in OFF_STATES:
            return  # UNDEFINED (or absent) tells nothing: keep the last known state
        clock = self._clock(vin)
        if ts < clock[2]:
            return  # late: the clock already reflects newer event time
        clock[2] = ts
        is_on = key in ON_STATES
        if clock[0] is is_on:
            return
        clock[0], clock[1] = is_on, None if is_on else ts

    def _parked_draw(self, vin: str, ts: int, signals: Mapping[str, object]) -> float | None:
        """Ah per parked day at this reading's 12 V current, if it is a parked-draw reading
        (reads the rest clock; ``_resting`` moves it)."""
        clock = self._clocks.get(vin)
        if clock is None or clock[0] is not False or ts < clock[2]:
            return None  # not known to be parked (the common case while driving), or late
        rest = clock[1]
        if rest is None or ts - rest < self._settle_ms:
            return None
        amps = signals.get(CURRENT)
        if type(amps) is not float:  # the contract's floats are the common case
            amps = as_number(amps)
            if amps is None:
                return None
        if amps > 0 or signals.get(CHARGING) is True:
            return None  # the 12 V is being charged, or the car is awake to charge
        volts = as_number(signals.get(VOLTAGE))
        if volts is not None and self._battery.is_top_up(volts, amps):
            return None
        return round(-amps * 24.0, 4)

    def _resting(self, vin: str, ts: int, signals: Mapping[str, object]) -> float | None:
        """The 12 V voltage if this reading is a resting one (and move the rest clock)."""
        volts = as_number(signals.get(VOLTAGE))
        if volts is None:
            return None
        clock = self._clock(vin)
        if ts < clock[2] or clock[0] is not False:
            return None  # late, or not known to be parked
        clock[2] = ts
        if self._battery.is_top_up(volts, as_number(signals.get(CURRENT))):
            clock[1] = ts  # surface charge again: the rest starts over
            return None
        rest = clock[1]
        if rest is None or ts - rest < self._rest_delay_ms:
            return None
        return volts
