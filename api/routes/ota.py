"""OTA releases, regions and campaigns: create, list, start / pause / resume / cancel, what a
draft would target, progress per wave and state, why each waiting car waits, and a vehicle's
OTA history.

Reading needs any key; changing needs the ``ota_manager`` (or ``admin``) role. A rollback
release needs a second key, of role ``admin``, to approve it (``POST
/ota/releases/{id}/approve``, audited in the release's ``approval``) before a campaign may use
it; the key that created it cannot. Cars' refusals, with their reason, are listed per vehicle
(``GET /vehicles/{vin}/ota``) and per campaign (``GET /ota/campaigns/{id}/vehicles``).
Campaign times (``start_event_ms``, the actions' times) are event time, the fleet's clock
the engine runs on. Lists are keyset-paginated (``{items, next_cursor}``); a creation answers
201 with the new resource's ``Location``.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import Admin, OtaManager, Viewer
from api.deps import PagingDep, StoreDep, bad_cursor
from api.ota_schemas import (
    UUID,
    CampaignChange,
    CampaignCreate,
    CampaignPage,
    CampaignPublic,
    CampaignVehicle,
    ExcludedVehicle,
    OtaActionPublic,
    RegionCreate,
    RegionPage,
    RegionPublic,
    ReleaseCreate,
    ReleasePage,
    ReleasePublic,
    TargetsPreview,
    VehicleOta,
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
from storage import ota_refusals as refusal_store
from storage.database import wall_ms
from storage.store import Store

log = logging.getLogger(__name__)
router = APIRouter(prefix="/ota", tags=["ota"])
# A vehicle's OTA record, beside its other views under /vehicles.
vehicle_router = APIRouter(tags=["ota"])
_UUID = re.compile(UUID)


def _known_id(value: str, what: str) -> None:
    """Ids are UUIDs: anything else is unknown, answered without asking the database."""
    if not _UUID.fullmatch(value):
        raise HTTPException(404, f"no {what} with id {value!r}")
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}}
APPROVE_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 403: {"model": Problem}}
CREATED: dict[int | str, dict[str, Any]] = {**ERRORS, 201: {"headers": {"Location": {
    "description": "the new resource", "schema": {"type": "string"}}}}}
LIST_ERRORS: dict[int | str, dict[str, Any]] = {422: {"model": Problem}}


# ---------------------------------------------------------------------------- the API's names
# The engine's log entries and transitions say "at"; the rollout runs on event time.


def _at_event_ms(entry: dict[str, Any]) -> dict[str, Any]:
    return {("at_event_ms" if k == "at" else k): v for k, v in entry.items()}


def campaign_public(row: dict[str, Any], progress: dict[str, Any] | None = None
                    ) -> CampaignPublic:
    fields = {k: v for k, v in row.items() if k != "status"}
    config = {("start_event_ms" if k == "start_at" else k): v
              for k, v in row["config"].items()}
    return CampaignPublic(**{**fields, "state": row["status"], "config": config,
                             "events": [_at_event_ms(e) for e in row["events"]],
                             "progress": progress})


def action_public(row: dict[str, Any]) -> OtaActionPublic:
    return OtaActionPublic(**{**row, "history": [_at_event_ms(t) for t in row["history"]]})


@router.post("/releases", status_code=201, response_model=ReleasePublic, responses=CREATED)
async def create_release(body: ReleaseCreate, store: StoreDep, who: OtaManager,
                         response: Response) -> ReleasePublic:
    """Register a release. Vehicles verify every offer of it against the signed manifest."""
    try:
        release = Release(**body.model_dump())
    except ValueError as exc:
        raise invalid("body", "version", str(exc)) from None
    try:
        row = await run_in_threadpool(ota_store.create_release, store, release,
                                      created_by=who.name, now_ms=wall_ms(),
                                      key_id=who.key_id)
    except ota_store.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    if release.rollback:
        log.info("ota_rollback_requested release=%s component=%s version=%s by=%s key=%s",
                 row["id"], release.component, release.version, who.name, who.key_id)
    response.headers["Location"] = f"/ota/releases/{row['id']}"
    return ReleasePublic(**row)


@router.get("/releases", response_model=ReleasePage, responses=LIST_ERRORS)
async def list_releases(store: StoreDep, paging: PagingDep, _who: Viewer) -> ReleasePage:
    """Releases by component, oldest first, one page at a time (follow ``next_cursor``)."""
    try:
        rows, next_cursor = await run_in_threadpool(
            ota_store.list_releases, store, paging.limit, paging.cursor)
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return ReleasePage(items=[ReleasePublic(**r) for r in rows], next_cursor=next_cursor)


@router.get("/releases/{release_id}", response_model=ReleasePublic, responses=ERRORS)
async def get_release(release_id: str, store: StoreDep, _who: Viewer) -> ReleasePublic:
    _known_id(release_id, "release")
    row = await run_in_threadpool(ota_store.get_release, store, release_id)
    if row is None:
        raise HTTPException(404, f"no release with id {release_id!r}")
    return ReleasePublic(**row)


@router.post("/releases/{release_id}/approve", response_model=ReleasePublic,
             responses=APPROVE_ERRORS)
async def approve_release(release_id: str, store: StoreDep, who: Admin) -> ReleasePublic:
    """Approve a rollback release, with an ``admin`` key other than the one that created it.
    Recorded once, with who approved it and when (its ``approval``); only then may campaigns
    use it. Cars accept a lower version only from a rollback release, so one key alone must
    not be able to push an old version to the fleet."""
    _known_id(release_id, "release")
    try:
        row = await run_in_threadpool(ota_store.approve_rollback, store, release_id,
                                      approved_by=who.name, key_id=who.key_id,
                                      now_ms=wall_ms())
    except KeyError:
        raise HTTPException(404, f"no release with id {release_id!r}") from None
    except ota_store.SameKey as exc:
        raise HTTPException(403, str(exc)) from None
    except ota_store.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    log.info("ota_rollback_approved release=%s component=%s version=%s by=%s key=%s",
             release_id, row["component"], row["version"], who.name, who.key_id)
    return ReleasePublic(**row)


@router.post("/campaigns", status_code=201, response_model=CampaignPublic, responses=CREATED)
async def create_campaign(body: CampaignCreate, store: StoreDep, who: OtaManager,
                          response: Response) -> CampaignPublic:
    """A draft campaign for one release; ``POST .../start`` plans its waves and starts it."""
    release_row = await run_in_threadpool(ota_store.get_release, store, body.release_id)
    if release_row is None:
        raise invalid("body", "release_id", f"no release with id {body.release_id!r}")
    if ota_store.rollback_pending(release_row):
        raise HTTPException(409, ota_store.awaiting_approval(release_row))
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
            soak_s=body.soak_s, start_at=body.start_event_ms, max_attempts=body.max_attempts,
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
    response.headers["Location"] = f"/ota/campaigns/{row['id']}"
    return campaign_public(row)


@router.post("/regions", status_code=201, response_model=RegionPublic, responses=CREATED)
async def create_region(body: RegionCreate, store: StoreDep, who: OtaManager,
                        response: Response) -> RegionPublic:
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
    response.headers["Location"] = f"/ota/regions/{row['name']}"
    return RegionPublic(**row)


@router.get("/regions", response_model=RegionPage, responses=LIST_ERRORS)
async def list_regions(store: StoreDep, paging: PagingDep, _who: Viewer) -> RegionPage:
    """Regions by name, one page at a time (follow ``next_cursor``)."""
    try:
        rows, next_cursor = await run_in_threadpool(
            ota_store.list_regions, store, paging.limit, paging.cursor)
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return RegionPage(items=[RegionPublic(**r) for r in rows], next_cursor=next_cursor)


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


@router.delete("/regions/{name}", status_code=204, response_class=Response, responses=ERRORS)
async def delete_region(name: str, store: StoreDep, _who: OtaManager) -> Response:
    """Delete a region no draft campaign targets (started campaigns resolved theirs)."""
    _known_region(name)
    try:
        await run_in_threadpool(ota_store.delete_region, store, name)
    except KeyError:
        raise HTTPException(404, f"no region named {name!r}") from None
    except ota_store.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return Response(status_code=204)


@router.get("/campaigns", response_model=CampaignPage, responses=LIST_ERRORS)
async def list_campaigns(store: StoreDep, paging: PagingDep, _who: Viewer) -> CampaignPage:
    """Campaigns, newest first, one page at a time (follow ``next_cursor``)."""
    try:
        rows, next_cursor = await run_in_threadpool(
            ota_store.list_campaigns, store, paging.limit, paging.cursor)
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return CampaignPage(items=[campaign_public(r) for r in rows], next_cursor=next_cursor)


def _campaign(store: Store, campaign_id: str) -> CampaignPublic:
    _known_id(campaign_id, "campaign")
    found = ota_store.get_campaign(store, campaign_id)
    if found is None:
        raise HTTPException(404, f"no campaign with id {campaign_id!r}")
    return campaign_public(found[0], ota_store.progress(store, campaign_id))


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
        excluded=[ExcludedVehicle(vin=vin, **{("located_event_ms" if k == "located_at" else k): v
                                              for k, v in why.items()})
                  for vin, why in sorted(targeting.excluded.items())[:limit]])


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


@router.get("/campaigns/{campaign_id}/vehicles", response_model=list[CampaignVehicle],
            responses=ERRORS)
async def campaign_vehicles(campaign_id: str, store: StoreDep, _who: Viewer,
                            limit: Annotated[int, Query(ge=1, le=5000)] = 500
                            ) -> list[CampaignVehicle]:
    """The campaign's cars by VIN (up to ``limit``): wave, state, attempt, and the car's
    latest refusal of it with its reason, including a refusal of a command the car could not
    authenticate that claimed to be this campaign (``campaign_id`` null)."""
    _known_id(campaign_id, "campaign")
    if await run_in_threadpool(ota_store.get_campaign, store, campaign_id) is None:
        raise HTTPException(404, f"no campaign with id {campaign_id!r}")
    rows = await run_in_threadpool(ota_store.campaign_vehicles, store, campaign_id, limit)
    return [CampaignVehicle(**r) for r in rows]


@vehicle_router.get("/vehicles/{vin}/ota", response_model=VehicleOta, responses=ERRORS)
async def vehicle_ota(vin: str, store: StoreDep, _who: Viewer,
                      limit: Annotated[int, Query(ge=1, le=refusal_store.REFUSALS_KEPT)] = 20
                      ) -> VehicleOta:
    """A vehicle's OTA record: its actions across campaigns and its latest refusals (up to
    ``limit``) with reason and event time, including those naming no campaign."""
    if not VIN_RE.fullmatch(vin):
        raise invalid("path", "vin", f"{vin!r} is not a VIN", "string_pattern_mismatch")
    actions = await run_in_threadpool(ota_store.vehicle_history, store, vin)
    refusals = await run_in_threadpool(refusal_store.vehicle_refusals, store, vin, limit)
    return VehicleOta(vin=vin, actions=[action_public(r) for r in actions],
                      refusals=refusals)


@router.get("/vehicles/{vin}", response_model=list[OtaActionPublic], responses=ERRORS)
async def vehicle_history(vin: str, store: StoreDep, _who: Viewer) -> list[OtaActionPublic]:
    """A vehicle's OTA actions across campaigns, newest first, each with its transitions."""
    if not VIN_RE.fullmatch(vin):
        raise invalid("path", "vin", f"{vin!r} is not a VIN", "string_pattern_mismatch")
    return [action_public(r) for r in await run_in_threadpool(ota_store.vehicle_history,
                                                              store, vin)]
