"""The signal history behind an alert, as a chart: the daily indicator its detector watches
(``storage.views.vehicle_trends``), with the onset, the threshold and the predicted failure
taken from the alert's own evidence where it has them."""

from __future__ import annotations

from datetime import date
from typing import Any

from markupsafe import Markup

from api.console.charts import Level, Marker, Point, line_chart
from diagnostics.daily import CELL_SPREAD, RESTING_12V
from storage import views
from storage.store import Store
from vocab.eventtime import DAY_MS

HISTORY_DAYS = 45  # of signal before the alert's latest evidence
MAX_AHEAD_DAYS = 60  # a predicted failure further out is named, not drawn
# Evidence keys that hold the level the detector compares with, by alert type.
_THRESHOLDS: dict[str, tuple[tuple[str, str], ...]] = {
    "weak_12v_battery": (("failure_v25", "fails at"), ("warn_v25", "warning")),
    "slow_tyre_leak": (("warning_kpa", "warning"),),
}
_UNITS = {"weak_12v_battery": " V", "slow_tyre_leak": " kPa", "cell_imbalance": " V"}


def indicator_of(alert: dict[str, Any]) -> str | None:
    """The daily indicator an alert's detector watches, or None (no daily history)."""
    kind, evidence = alert["type"], alert.get("evidence") or {}
    if alert["asset_kind"] != "vehicle":
        return None
    if kind == "weak_12v_battery":
        return RESTING_12V
    if kind == "cell_imbalance":
        return CELL_SPREAD
    if kind == "slow_tyre_leak":
        wheel = evidence.get("wheel")  # e.g. "front left" -> row1 left
        if isinstance(wheel, str) and " " in wheel:
            row, side = wheel.split(" ", 1)
            return f"tire_pressure_row{1 if row == 'front' else 2}_{side}_kpa"
    return None


def _day_ms(day: Any) -> int:
    parsed = day if isinstance(day, date) else date.fromisoformat(str(day))
    return (parsed.toordinal() - date(1970, 1, 1).toordinal()) * DAY_MS + DAY_MS // 2


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def alert_chart(store: Store, alert: dict[str, Any]) -> Markup | None:
    """The chart of ``alert``'s signal history, or None when its type has none."""
    indicator = indicator_of(alert)
    if indicator is None:
        return None
    trends = views.vehicle_trends(store, alert["asset_id"], alert["last_seen_event_ms"],
                                  HISTORY_DAYS)
    series = trends.get(indicator, [])
    points = [Point(_day_ms(p["day"]), p["mean"], p["min"], p["max"]) for p in series]
    evidence = alert.get("evidence") or {}
    markers = [Marker(alert["first_seen_event_ms"], "onset", "onset")]
    predicted = alert.get("predicted_failure_event_ms")
    start = alert["last_seen_event_ms"] - HISTORY_DAYS * DAY_MS
    end = alert["last_seen_event_ms"]
    if predicted is not None and predicted - end <= MAX_AHEAD_DAYS * DAY_MS:
        markers.append(Marker(predicted, "predicted failure", "failure"))
        end = max(end, predicted)
    levels = [Level(v, label) for key, label in _THRESHOLDS.get(alert["type"], ())
              if (v := _number(evidence.get(key))) is not None]
    title = f"{indicator.replace('_', ' ')}: daily range and mean before the alert"
    return line_chart(points, title=title, unit=_UNITS.get(alert["type"], ""),
                      markers=markers, levels=levels, t_range=(start, end + DAY_MS // 2))
