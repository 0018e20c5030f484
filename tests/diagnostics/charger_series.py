"""Hand-built OCPP charging sessions as canonical charger records (for the charger tests).

``session(...)`` returns the records one session produces on connector 1: ``Preparing``,
``Charging``, a meter value per minute (power, offer, SoC, energy) and the end status. The
power profile is a function of the minute, so a test states the physics it means: a steady
car, a car that takes a fraction of the offer, a taper near full, a foldback after 5 minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

MINUTE_MS = 60_000
DAY_MS = 86_400_000
T0 = 1_767_571_200_000

Profile = Callable[[int], float]  # minute -> power (W)


class Charger:
    """One charger's record stream (its own seq and transaction counter)."""

    def __init__(self, charger_id: str = "CP-0001", offered_w: float = 150_000.0) -> None:
        self.id = charger_id
        self.offered_w = offered_w
        self.seq = 0
        self.tx = 0

    def record(self, kind: str, ts: int, data: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        return {"kind": kind, "id": self.id, "ts": ts, "seq": self.seq, "data": data}

    def status(self, ts: int, status: str, error: str = "NoError") -> dict[str, Any]:
        return self.record("charger_status", ts, {"connectorId": 1, "status": status,
                                                  "errorCode": error})

    def session(self, start: int, minutes: int, profile: Profile, soc0: float = 30.0,
                soc_per_min: float = 0.5, vin: str | None = None, end_status: str = "Finishing",
                error: str = "NoError", with_soc: bool = True) -> list[dict[str, Any]]:
        self.tx += 1
        out = [self.status(start, "Preparing"), self.status(start + 30_000, "Charging")]
        energy = 1e6
        for m in range(minutes + 1):
            ts = start + 60_000 + m * MINUTE_MS
            power = profile(m) if m < minutes else 0.0
            measurands: dict[str, float] = {"Power.Active.Import": power,
                                            "Power.Offered": self.offered_w,
                                            "Energy.Active.Import.Register": energy}
            if with_soc:
                measurands["SoC"] = min(100.0, soc0 + soc_per_min * m)
            data: dict[str, Any] = {"connectorId": 1, "transactionId": self.tx,
                                    "measurands": measurands}
            if vin is not None:
                data["vin"] = vin
            out.append(self.record("charger_meter", ts, data))
            energy += power / 60
        end = start + 60_000 + minutes * MINUTE_MS
        out.append(self.status(end, end_status, error))
        out.append(self.status(end + 2 * MINUTE_MS, "Available"))
        return out


def steady(power_w: float) -> Profile:
    return lambda m: power_w * (1.0 + 0.01 * ((m * 7) % 5 - 2))  # +/- 2 % meter noise


def folding(power_w: float, factor: float, after_min: int = 5) -> Profile:
    base = steady(power_w)
    return lambda m: base(m) * (factor if m >= after_min else 1.0)


def sessions(charger: Charger, count: int, profile: Profile, start: int = T0,
             gap_ms: int = 3 * 3_600_000, **options: Any) -> Iterator[dict[str, Any]]:
    for i in range(count):
        yield from charger.session(start + i * gap_ms, 40, profile, **options)
