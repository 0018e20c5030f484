"""Vehicles: the latest known state of one vehicle."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.auth import Viewer
from api.deps import StoreDep
from api.problems import invalid
from api.schemas import AlertPublic, Problem, SignalPublic, VehiclePublic
from ingest.contract import VIN_RE

router = APIRouter(prefix="/vehicles", tags=["vehicles"])


@router.get("/{vin}", response_model=VehiclePublic,
            responses={404: {"model": Problem}, 422: {"model": Problem}})
def get_vehicle(vin: str, store: StoreDep, _who: Viewer) -> VehiclePublic:
    """Latest value of every signal with its age, and the vehicle's open alerts.

    Ages are relative to the fleet's newest event time, not the wall clock, so they stay
    meaningful for simulated, replayed or delayed data.
    """
    if not VIN_RE.fullmatch(vin):
        raise invalid("path", "vin", f"{vin!r} is not a VIN (17 characters A-Z and 0-9, "
                      "no I, O or Q)", "string_pattern_mismatch")
    asset = store.vehicle(vin)
    if asset is None:
        raise HTTPException(404, f"vehicle {vin} has never reported")
    now = store.fleet_now_ms()
    return VehiclePublic(
        vin=vin,
        first_seen=asset["first_seen"],
        last_seen=asset["last_seen"],
        fleet_now=now,
        signals=[SignalPublic(path=s["path"], value=s["value"], ts=s["ts"],
                              age_s=None if now is None else (now - s["ts"]) / 1000)
                 for s in asset["signals"]],
        open_alerts=[AlertPublic(**a) for a in asset["open_alerts"]],
    )
