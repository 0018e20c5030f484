"""OTA releases, regions and campaigns: create, list, start / pause / resume / cancel, what a
draft would target, progress per wave and state, why each waiting car waits, and a vehicle's
OTA history.

Reading needs any key; changing needs the ``ota_manager`` (or ``admin``) role. Campaign times
(start_at, the actions' timestamps) are event time, the fleet's clock the engine runs on.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from api.auth import OtaManager, Viewer
from api.deps import StoreDep
from api.ota_schemas import (
    UUID,
    CampaignChange,
    CampaignCreate,
    CampaignPublic,
    ExcludedVehicle,
    OtaActionPublic,
    RegionCreate,
    RegionPublic,
    ReleaseCreate,
    ReleasePublic,
    TargetsPreview,
    WaitingVehicle,
)
from api.problems import invalid
from api.schemas import Problem
from ingest.contract import VIN_RE
from ota.model import (
    Campaign,
    CampaignStatus,
    GatePolicy,
    MaintenanceWindow,
    Release,
    Targets,
    Wave,
)
from ota.regions import NAME_RE, region_of
from storage import ota as ota_store
from storage.keys import wall_ms
from storage.store import Store

router = APIRouter(prefix="/ota", tags=["ota"])
_UUID = re.compile(UUID)


def _known_id(value: str, what: str) -> None:
    """Ids are UUIDs: anything else is unknown, answered without asking the database."""
    if not _UUID.fullmatch(value):
        raise HTTPException(404, f"no {what} with id {value!r}")
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}}


@router.post("/releases", status_code=201, response_model=ReleasePublic, responses=ERRORS)
async def create_release(body: ReleaseCreate, store: StoreDep, who: OtaManager
                         ) -> ReleasePublic:
    """Register a release. Vehicles verify every offer of it against the signed manifest."""
    try:
        release = Release(**body.model_dump())
    except ValueError as exc:
        raise invalid("body", "version", str(exc)) from None
    try:
        row = await run_in_threadpool(ota_store.create_release, store, release,
                                      created_by=who.name, now_ms=wall_ms())
    except ota_store.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return ReleasePublic(**row)


@router.get("/releases", response_model=list[ReleasePublic])
async def list_releases(store: StoreDep, _who: Viewer) -> list[ReleasePublic]:
    return [ReleasePublic(**r) for r in await run_in_threadpool(ota_store.list_releases,
                                                                store)]


@router.get("/releases/{release_id}", response_model=ReleasePublic, responses=ERRORS)
async def get_release(release_id: str, store: StoreDep, _who: Viewer) -> ReleasePublic:
    _known_id(release_id, "release")
    row = await run_in_threadpool(ota_store.get_release, store, release_id)
    if row is None:
        raise HTTPException(404, f"no release with id {release_id!r}")
    return ReleasePublic(**row)


@router.post("/campaigns", status_code=201, response_model=CampaignPublic, responses=ERRORS)
async def create_campaign(body: CampaignCreate, store: StoreDep, who: OtaManager
                          ) -> CampaignPublic:
    """A draft campaign for one release; ``POST .../start`` plans its waves and starts it."""
    release_row = await run_in_threadpool(ota_store.get_release, store, body.release_id)
    if release_row is None:
        raise invalid("body", "release_id", f"no release with id {body.release_id!r}")
    bad_vins = [v for v in body.targets.vins if not VIN_RE.fullmatch(v)]
    if bad_vins:
        raise invalid("body", "targets", f"not VINs: {', '.join(bad_vins[:5])}")
    if not body.targets.vins and not body.targets.models and not body.targets.regions:
        raise invalid("body", "targets", "name at least one VIN, model or region")
    unknown = await run_in_threadpool(ota_store.unknown_regions, store, body.targets.regions)
    if unknown:
        raise invalid("body", "targets", f"unknown region(s): {', '.join(unknown)} "
                      "(create them at /ota/regions first)")
    try:
        campaign = Campaign(
            id=str(uuid.uuid4()), release=ota_store.release_of(release_row),
            waves=tuple(Wave(**w.model_dump()) for w in body.waves),
            window=MaintenanceWindow(**body.window.model_dump()),
            gate=GatePolicy(**{**body.gate.model_dump(), "blocking_alert_types":
                               frozenset(body.gate.blocking_alert_types)}),
            soak_s=body.soak_s, start_at=body.start_at, max_attempts=body.max_attempts,
            retry_base_s=body.retry_base_s, offer_ttl_s=body.offer_ttl_s,
            targets=Targets(models=frozenset(body.targets.models),
                            from_versions=frozenset(body.targets.from_versions),
                            regions=frozenset(body.targets.regions),
                            vins=frozenset(body.targets.vins)))
    except ValueError as exc:
        raise invalid("body", "waves", str(exc)) from None
    row = await run_in_threadpool(ota_store.create_campaign, store, campaign, name=body.name,
                                  release_id=body.release_id, created_by=who.name,
                                  now_ms=wall_ms())
    return CampaignPublic(**row)


@router.post("/regions", status_code=201, response_model=RegionPublic, responses=ERRORS)
async def create_region(body: RegionCreate, store: StoreDep, who: OtaManager) -> RegionPublic:
    """A named region (a market, a country, a pilot area) as WGS84 boxes and/or polygons.
    A car is in it when its last known position is in any of its areas."""
    try:
        region = region_of(body.name, {"boxes": [b.model_dump() for b in body.boxes],
                                       "polygons": body.polygons}, body.description)
    except ValueError as exc:
        # Errors of one area name it ("boxes[2]: ..."); region-wide ones point at polygons
        # when they are about points, else at boxes (the first of the two area lists).
        message = str(exc)
        field = "polygons" if message.startswith("polygons[") or "points" in message \
            else "boxes"
        raise invalid("body", field, message) from None
    try:
        row = await run_in_threadpool(ota_store.create_region, store, region,
                                      created_by=who.name, now_ms=wall_ms())
    except ota_store.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return RegionPublic(**row)


@router.get("/regions", response_model=list[RegionPublic])
async def list_regions(store: StoreDep, _who: Viewer) -> list[RegionPublic]:
    return [RegionPublic(**r) for r in await run_in_threadpool(ota_store.list_regions, store)]


def _known_region(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise HTTPException(404, f"no region named {name!r}")


@router.get("/regions/{name}", response_model=RegionPublic, responses=ERRORS)
async def get_region(name: str, store: StoreDep, _who: Viewer) -> RegionPublic:
    _known_region(name)
    row = await run_in_threadpool(ota_store.region_row, store, name)
    if row is None:
        raise HTTPException(404, f"no region named {name!r}")
    return RegionPublic(**row)


@router.delete("/regions/{name}", status_code=204, responses=ERRORS)
async def delete_region(name: str, store: StoreDep, _who: OtaManager) -> None:
    """Delete a region no draft campaign targets (started campaigns resolved theirs)."""
    _known_region(name)
    try:
        await run_in_threadpool(ota_store.delete_region, store, name)
    except KeyError:
        raise HTTPException(404, f"no region named {name!r}") from None
    except ota_store.Conflict as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/campaigns", response_model=list[CampaignPublic])
async def list_campaigns(store: StoreDep, _who: Viewer) -> list[CampaignPublic]:
    return [CampaignPublic(**r) for r in await run_in_threadpool(ota_store.list_campaigns,
                                                                 store)]


def _campaign(store: Store, campaign_id: str) -> CampaignPublic:
    _known_id(campaign_id, "campaign")
    found = ota_store.get_campaign(store, campaign_id)
    if found is None:
        raise HTTPException(404, f"no campaign with id {campaign_id!r}")
    return CampaignPublic(**found[0], progress=ota_store.progress(store, campaign_id))


@router.get("/campaigns/{campaign_id}", response_model=CampaignPublic, responses=ERRORS)
async def get_campaign(campaign_id: str, store: StoreDep, _who: Viewer) -> CampaignPublic:
    """The campaign, its log (started, waves, pauses with their evidence) and its progress:
    vehicles per wave and state, waiting vehicles per gate."""
    return await run_in_threadpool(_campaign, store, campaign_id)


@router.post("/campaigns/{campaign_id}/start", response_model=CampaignPublic,
             responses=ERRORS)
async def start_campaign(campaign_id: str, store: StoreDep, _who: OtaManager
                         ) -> CampaignPublic:
    """Resolve the targets, put every car in its wave, and start (or schedule) the rollout."""
    _known_id(campaign_id, "campaign")
    now = await run_in_threadpool(store.fleet_now_ms)
    if now is None:
        raise HTTPException(409, "no vehicle has reported yet: nothing to target")
    try:
        await run_in_threadpool(ota_store.start_campaign, store, campaign_id, now)
    except KeyError:
        raise HTTPException(404, f"no campaign with id {campaign_id!r}") from None
    except ota_store.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return await run_in_threadpool(_campaign, store, campaign_id)


@router.get("/campaigns/{campaign_id}/targets", response_model=TargetsPreview,
            responses=ERRORS)
async def preview_targets(campaign_id: str, store: StoreDep, _who: Viewer,
                          limit: Annotated[int, Query(ge=1, le=5000)] = 500
                          ) -> TargetsPreview:
    """What starting this draft now would target, and every car left out with why (up to
    ``limit`` of each). A started campaign's targets are frozen: its start event in the log
    has them."""
    _known_id(campaign_id, "campaign")
    found = await run_in_threadpool(ota_store.get_campaign, store, campaign_id)
    if found is None:
        raise HTTPException(404, f"no campaign with id {campaign_id!r}")
    campaign = found[1]
    if campaign.status is not CampaignStatus.DRAFT:
        raise HTTPException(409, f"campaign is {campaign.status}: its targets were resolved "
                                 "when it started (see its start event)")
    try:
        targeting = await run_in_threadpool(ota_store.resolve_targets, store, campaign.targets,
                                            campaign.release.component)
    except KeyError as exc:
        raise HTTPException(409, f"the campaign targets region(s) that no longer exist: "
                                 f"{exc.args[0]}") from None
    return TargetsPreview(
        vehicles=len(targeting.vins), vins=targeting.vins[:limit],
        not_targeted=targeting.summary()["not_targeted"],
        excluded=[ExcludedVehicle(vin=vin, **why) for vin, why in
                  sorted(targeting.excluded.items())[:limit]])


async def _change(store: Store, campaign_id: str, to: CampaignStatus, reason: str
                  ) -> CampaignPublic:
    _known_id(campaign_id, "campaign")
    now = await run_in_threadpool(store.fleet_now_ms) or 0
    try:
        await run_in_threadpool(ota_store.change_status, store, campaign_id, to, now, reason)
    except KeyError:
        raise HTTPException(404, f"no campaign with id {campaign_id!r}") from None
    except ota_store.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return await run_in_threadpool(_campaign, store, campaign_id)


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignPublic,
             responses=ERRORS)
async def pause_campaign(campaign_id: str, store: StoreDep, who: OtaManager,
                         body: CampaignChange | None = None) -> CampaignPublic:
    return await _change(store, campaign_id, CampaignStatus.PAUSED,
                         (body.reason if body else "") or f"paused by {who.name}")


@router.post("/campaigns/{campaign_id}/resume", response_model=CampaignPublic,
             responses=ERRORS)
async def resume_campaign(campaign_id: str, store: StoreDep, who: OtaManager,
                          body: CampaignChange | None = None) -> CampaignPublic:
    return await _change(store, campaign_id, CampaignStatus.RUNNING,
                         (body.reason if body else "") or f"resumed by {who.name}")


@router.post("/campaigns/{campaign_id}/cancel", response_model=CampaignPublic,
             responses=ERRORS)
async def cancel_campaign(campaign_id: str, store: StoreDep, who: OtaManager,
                          body: CampaignChange | None = None) -> CampaignPublic:
    """Cancel: cars that have not started installing get a cancel command."""
    return await _change(store, campaign_id, CampaignStatus.CANCELED,
                         (body.reason if body else "") or f"canceled by {who.name}")


@router.get("/campaigns/{campaign_id}/waiting", response_model=list[WaitingVehicle],
            responses=ERRORS)
async def waiting(campaign_id: str, store: StoreDep, _who: Viewer,
                  limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[WaitingVehicle]:
    """Cars not offered the update at the engine's last step, and the gates they failed."""
    _known_id(campaign_id, "campaign")
    if await run_in_threadpool(ota_store.get_campaign, store, campaign_id) is None:
        raise HTTPException(404, f"no campaign with id {campaign_id!r}")
    rows = await run_in_threadpool(ota_store.waiting_vehicles, store, campaign_id, limit)
    return [WaitingVehicle(**r) for r in rows]


@router.get("/vehicles/{vin}", response_model=list[OtaActionPublic], responses=ERRORS)
async def vehicle_history(vin: str, store: StoreDep, _who: Viewer) -> list[OtaActionPublic]:
    """A vehicle's OTA actions across campaigns, newest first, each with its transitions."""
    if not VIN_RE.fullmatch(vin):
        raise invalid("path", "vin", f"{vin!r} is not a VIN", "string_pattern_mismatch")
    return [OtaActionPublic(**r) for r in await run_in_threadpool(ota_store.vehicle_history,
                                                                  store, vin)]
