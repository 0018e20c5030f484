"""Vehicles: the fleet list with a health summary, and one vehicle's health card."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from api.auth import Viewer
from api.case_schemas import CasePublic
from api.deps import PagingDep, StoreDep, bad_cursor
from api.problems import invalid
from api.routes.cases import CasesDep
from api.schemas import (
    AlertPublic,
    Problem,
    SignalPublic,
    TrendPoint,
    VehiclePage,
    VehiclePublic,
    VehicleSummary,
)
from ingest.contract import VIN_RE
from storage import ota as ota_store
from storage import views
from storage.store import Store

router = APIRouter(prefix="/vehicles", tags=["vehicles"])

# The characters a VIN may hold: a prefix of anything else can match no vehicle, and this
# keeps LIKE wildcards (% and _) out of the search.
VIN_PREFIX_PATTERN = r"^[A-HJ-NPR-Z0-9]{1,17}$"
MAX_TREND_DAYS = 366


@router.get("", response_model=VehiclePage, responses={422: {"model": Problem}})
def list_vehicles(
    store: StoreDep,
    paging: PagingDep,
    _who: Viewer,
    vin_prefix: Annotated[str | None, Query(
        pattern=VIN_PREFIX_PATTERN, description="VINs starting with this (VIN characters)")
    ] = None,
    model: Annotated[str | None, Query(
        min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$",
        description="exact latest Vehicle.VehicleIdentification.Model")] = None,
) -> VehiclePage:
    """Vehicles by VIN, each with its model and health summary (last report, open alerts and
    their worst severity). Keyset pagination: follow ``next_cursor`` until it is null;
    vehicles that appear meanwhile never shift later pages."""
    try:
        rows, next_cursor = views.list_vehicles(store, vin_prefix=vin_prefix, model=model,
                                                limit=paging.limit, cursor=paging.cursor)
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return VehiclePage(items=[VehicleSummary(**r) for r in rows], next_cursor=next_cursor)


@router.get("/{vin}", response_model=VehiclePublic,
            responses={404: {"model": Problem}, 422: {"model": Problem}})
def get_vehicle(
    vin: str,
    store: StoreDep,
    cases: CasesDep,
    _who: Viewer,
    days: Annotated[int, Query(ge=1, le=MAX_TREND_DAYS,
                               description="days of daily trends, ending on the day of "
                                           "last_seen_event_ms")
                    ] = 30,
) -> VehiclePublic:
    """The health card: latest value of every signal with its age, open alerts, and the
    daily trends of the indicators the detectors use.

    Ages are relative to the fleet's newest event time, not the wall clock, so they stay
    meaningful for simulated, replayed or delayed data; so is the trend window.
    """
    if not VIN_RE.fullmatch(vin):
        raise invalid("path", "vin", f"{vin!r} is not a VIN (17 characters A-Z and 0-9, "
                      "no I, O or Q)", "string_pattern_mismatch")
    asset = store.vehicle(vin)
    if asset is None:
        raise HTTPException(404, f"vehicle {vin} has never reported")
    now = store.fleet_now_ms()
    trends = views.vehicle_trends(store, vin, asset["last_seen_event_ms"], days)
    return VehiclePublic(
        vin=vin,
        first_seen_event_ms=asset["first_seen_event_ms"],
        last_seen_event_ms=asset["last_seen_event_ms"],
        fleet_now_event_ms=now,
        signals=[signal_public(s, now) for s in asset["signals"]],
        open_alerts=[AlertPublic(**a) for a in asset["open_alerts"]],
        trends={k: [TrendPoint(**p) for p in points] for k, points in trends.items()},
        ota=_ota_summary(store, vin),
        open_cases=[CasePublic(**c).model_dump() for c in cases.open_cases_of("vehicle", vin)],
    )


def signal_public(signal: dict[str, Any], fleet_now_event_ms: int | None) -> SignalPublic:
    """A latest value with its age against the fleet's event-time now."""
    ts = signal["ts_event_ms"]
    return SignalPublic(path=signal["path"], value=signal["value"], ts_event_ms=ts,
                        age_s=None if fleet_now_event_ms is None
                        else (fleet_now_event_ms - ts) / 1000)


def _ota_summary(store: Store, vin: str) -> dict[str, Any] | None:
    """The car's newest OTA action (campaign, wave, state, attempt, why it waits), or None."""
    history = ota_store.vehicle_history(store, vin)
    if not history:
        return None
    newest = history[0]
    return {k: newest[k] for k in ("campaign_id", "name", "release_id", "wave", "state",
                                   "attempt", "updated_event_ms", "waiting")}
