"""The health gate: may this car be offered an update right now? If not, why not.

Reasons are stable codes, so the API can tell staff which gate each waiting car is behind,
and a car that never passes is reported as such instead of being skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ota.model import GatePolicy, MaintenanceWindow

PARKED_STATES = frozenset({"OFF", "LOCK"})  # VSS LowVoltageSystemState with the car off


@dataclass(frozen=True, slots=True)
class VehicleSnapshot:
    """What the fleet's latest telemetry says about one car (event time ``ts``)."""

    vin: str
    ts: int
    installed_version: str = "0.0.0"
    model: str = ""
    region: str = ""
    timezone: str = ""  # IANA; empty = unknown (the campaign window's own zone applies)
    speed_kmh: float | None = None
    system_state: str | None = None  # Vehicle.LowVoltageSystemState
    soc_percent: float | None = None  # None: the car reports no traction battery's charge
    v12_volts: float | None = None
    charging: bool = False
    open_alerts: tuple[tuple[str, str], ...] = ()  # (type, severity)


def local_minute(ts_ms: int, timezone: str) -> int:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(zone)
    return local.hour * 60 + local.minute


def gate_reasons(car: VehicleSnapshot | None, policy: GatePolicy, window: MaintenanceWindow,
                 now: int) -> list[str]:
    """Every gate the car fails now (empty: it may be offered the update)."""
    if car is None:
        return ["no_telemetry"]
    reasons = []
    if (now - car.ts) / 1000 > policy.max_state_age_s:
        reasons.append("telemetry_stale")
    if car.speed_kmh is None or car.speed_kmh > 0:
        reasons.append("not_parked" if car.speed_kmh else "speed_unknown")
    if car.system_state not in PARKED_STATES:
        reasons.append("ignition_on" if car.system_state else "ignition_unknown")
    # A combustion car has no traction battery to run down during an install: the 12 V gate
    # below is its guard. A car that reports a state of charge must have enough of it.
    if car.soc_percent is not None and car.soc_percent < policy.min_soc_percent:
        reasons.append("low_soc")
    if car.v12_volts is None or car.v12_volts < policy.min_12v_volts:
        reasons.append("low_12v" if car.v12_volts is not None else "v12_unknown")
    if car.charging and not policy.allow_while_charging:
        reasons.append("charging")
    for alert_type, severity in car.open_alerts:
        if alert_type in policy.blocking_alert_types:
            reasons.append(f"open_alert:{alert_type}")
        elif severity == "critical":
            reasons.append(f"critical_alert:{alert_type}")
    if not window.contains(local_minute(now, car.timezone or window.timezone)):
        reasons.append("outside_window")
    return reasons
