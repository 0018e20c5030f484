"""OTA persistence: releases, campaigns and actions in the relational store.

Functions over ``storage.store.Store`` (its engine and serialised write transactions). The worker's
OTA timer loads running campaigns, runs the pure engine, and saves what it decided; the API
creates releases and campaigns and changes their status; vehicle progress reports are folded
into their actions here. Campaign and action times are event time (the fleet's clock,
``*_event_ms`` columns); when staff created a release, campaign or region is wall clock
(``created_wall_ms``). The ``ota`` model's own names (``updated_at``, ``next_attempt_at``,
``wave_succeeded_at``) are mapped to the columns here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ota.engine import StepResult, apply_report, plan
from ota.gate import VehicleSnapshot
from ota.model import (
    Action,
    ActionState,
    Campaign,
    CampaignStatus,
    GatePolicy,
    MaintenanceWindow,
    Release,
    Targets,
    Transition,
    Wave,
)
from ota.regions import (
    LOCATION_UNKNOWN,
    Position,
    Region,
    in_regions,
    position_of,
    region_of,
)
from storage.cursor import after, check_limit, decode_cursor, page
from storage.models import (
    alerts,
    assets,
    latest_signals,
    ota_actions,
    ota_campaigns,
    ota_regions,
    ota_releases,
    ota_rollback_approvals,
)
from storage.ota_refusals import campaign_refusals, record_refusals, report_target
from storage.store import Store

SPEED = "Vehicle.Speed"
SYSTEM_STATE = "Vehicle.LowVoltageSystemState"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
V12 = "Vehicle.LowVoltageBattery.CurrentVoltage"
CHARGING = "Vehicle.Powertrain.TractionBattery.Charging.IsCharging"
MODEL = "Vehicle.VehicleIdentification.Model"
LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
OTHER_VERSION = "other_version"
# How many excluded VINs per reason a campaign's start event keeps (the counts are complete).
EXCLUDED_LISTED = 1000
GATE_SIGNALS = (SPEED, SYSTEM_STATE, SOC, V12, CHARGING, MODEL)
RELEASE_SORT = "releases:component,created_wall_ms"
CAMPAIGN_SORT = "campaigns:-created_wall_ms"
REGION_SORT = "regions:name"
ACTIVE = (CampaignStatus.SCHEDULED.value, CampaignStatus.RUNNING.value,
          CampaignStatus.CANCELED.value)


class Conflict(ValueError):
    """A request that contradicts the stored state (HTTP 409)."""


class SameKey(ValueError):
    """The key that asked for a rollback release tried to approve it too (HTTP 403)."""


# ---------------------------------------------------------------------------- releases


def create_release(store: Store, release: Release, *, created_by: str, now_ms: int,
                   key_id: str | None = None) -> dict[str, Any]:
    """Store a release; a rollback release is stored as a request for a second key's
    approval (``approve_rollback``), made by ``created_by`` with the API key ``key_id``."""
    row = {"id": str(uuid.uuid4()), **release.as_dict(), "created_wall_ms": now_ms,
           "created_by": created_by}
    request = {"release_id": row["id"], "requested_by": created_by,
               "requested_key_id": key_id, "requested_wall_ms": now_ms}
    try:
        with store.write() as conn:
            conn.execute(ota_releases.insert().values(**row))
            if release.rollback:
                conn.execute(ota_rollback_approvals.insert().values(**request))
    except IntegrityError:
        raise Conflict(f"release {release.component} {release.version} exists") from None
    return {**row, "approval": _approval(row, request if release.rollback else None)}


def _approval(release: Mapping[str, Any], row: Any) -> dict[str, Any] | None:
    """A rollback release's approval record (None for an ordinary release). Without a
    stored request (a release from before approvals existed) its creator is the requester."""
    if not release["rollback"]:
        return None
    found = dict(row) if row is not None and row.get("requested_by") is not None else {
        "requested_by": release["created_by"], "requested_key_id": None,
        "requested_wall_ms": release["created_wall_ms"]}
    approved = found.get("approved_wall_ms") is not None
    return {"state": "approved" if approved else "pending",
            "requested_by": found["requested_by"],
            "requested_wall_ms": found["requested_wall_ms"],
            "approved_by": found.get("approved_by") if approved else None,
            "approved_wall_ms": found.get("approved_wall_ms") if approved else None}


_APPROVAL_COLUMNS = (ota_rollback_approvals.c.requested_by,
                     ota_rollback_approvals.c.requested_wall_ms,
                     ota_rollback_approvals.c.approved_by,
                     ota_rollback_approvals.c.approved_wall_ms)


def _with_approvals() -> Any:
    """Releases joined with their approval records (if any)."""
    return select(ota_releases, *_APPROVAL_COLUMNS).select_from(ota_releases.outerjoin(
        ota_rollback_approvals, ota_rollback_approvals.c.release_id == ota_releases.c.id))


def _release_row(row: Any) -> dict[str, Any]:
    release = {c.name: row[c.name] for c in ota_releases.c}
    return {**release, "approval": _approval(release, row)}


def rollback_pending(release_row: Mapping[str, Any]) -> bool:
    """Whether a release (as ``get_release`` returns it) is a rollback nobody approved."""
    approval = release_row.get("approval")
    return approval is not None and approval["state"] != "approved"


def awaiting_approval(release_row: Mapping[str, Any]) -> str:
    """Why no campaign may use a rollback release nobody approved yet."""
    return (f"release {release_row['component']} {release_row['version']} is a rollback "
            f"release awaiting approval: a second key of role admin must approve it "
            f"(POST /ota/releases/{release_row['id']}/approve) before a campaign may use it")


def approve_rollback(store: Store, release_id: str, *, approved_by: str, key_id: str,
                     now_ms: int) -> dict[str, Any]:
    """A second key approves a rollback release: recorded with who and when, once.
    ``KeyError`` for an unknown release; ``SameKey`` when ``key_id`` asked for it;
    ``Conflict`` for a release that is no rollback or is approved already."""
    with store.write() as conn:
        release = conn.execute(select(ota_releases).where(
            ota_releases.c.id == release_id)).mappings().first()
        if release is None:
            raise KeyError(release_id)
        if not release["rollback"]:
            raise Conflict(f"release {release['component']} {release['version']} is not a "
                           "rollback release: it needs no approval")
        request = conn.execute(select(ota_rollback_approvals).where(
            ota_rollback_approvals.c.release_id == release_id)).mappings().first()
        if request is not None and request["approved_wall_ms"] is not None:
            raise Conflict(f"rollback release {release['component']} {release['version']} "
                           f"was approved already, by {request['approved_by']!r}")
        if request is not None and request["requested_key_id"] == key_id:
            raise SameKey(f"the key {approved_by!r} asked for this rollback release; a "
                          "second admin key must approve it")
        approval = {"approved_by": approved_by, "approved_key_id": key_id,
                    "approved_wall_ms": now_ms}
        if request is None:
            conn.execute(ota_rollback_approvals.insert().values(
                release_id=release_id, requested_by=release["created_by"],
                requested_key_id=None, requested_wall_ms=release["created_wall_ms"],
                **approval))
        else:
            conn.execute(update(ota_rollback_approvals).where(
                ota_rollback_approvals.c.release_id == release_id).values(**approval))
    found = get_release(store, release_id)
    assert found is not None
    return found


def list_releases(store: Store, limit: int = 50, cursor: str | None = None
                  ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of releases by component, oldest first, and the next page's cursor."""
    check_limit(limit)
    order = (ota_releases.c.component, ota_releases.c.created_wall_ms, ota_releases.c.id)
    query = _with_approvals().order_by(*order).limit(limit + 1)
    if cursor:
        query = query.where(after(order, decode_cursor(cursor, RELEASE_SORT, (str, int, str))))
    with store.engine.connect() as conn:
        rows = [_release_row(r) for r in conn.execute(query).mappings()]
    return page(rows, limit, lambda r: (r["component"], r["created_wall_ms"], r["id"]),
                RELEASE_SORT)


def get_release(store: Store, release_id: str) -> dict[str, Any] | None:
    """The release and, for a rollback release, its ``approval`` record."""
    with store.engine.connect() as conn:
        row = conn.execute(_with_approvals().where(
            ota_releases.c.id == release_id)).mappings().first()
    return _release_row(row) if row else None


def release_of(row: Any) -> Release:
    return Release(**{k: row[k] for k in ("version", "component", "artifact_url", "size",
                                         "sha256", "notes", "rollback")})


# ---------------------------------------------------------------------------- campaigns


def campaign_config(campaign: Campaign) -> dict[str, Any]:
    """The stored JSON form of a campaign's settings (what POST /ota/campaigns accepts)."""
    gate = asdict(campaign.gate)
    gate["blocking_alert_types"] = sorted(campaign.gate.blocking_alert_types)
    return {
        "waves": [asdict(w) for w in campaign.waves], "window": asdict(campaign.window),
        "gate": gate, "soak_s": campaign.soak_s, "start_at": campaign.start_at,
        "max_attempts": campaign.max_attempts, "retry_base_s": campaign.retry_base_s,
        "offer_ttl_s": campaign.offer_ttl_s,
        "targets": {k: sorted(v) for k, v in asdict(campaign.targets).items()},
    }


def campaign_of(row: Any, release: Release) -> Campaign:
    config = row["config"]
    gate = dict(config["gate"])
    gate["blocking_alert_types"] = frozenset(gate["blocking_alert_types"])
    return Campaign(
        id=row["id"], release=release, waves=tuple(Wave(**w) for w in config["waves"]),
        window=MaintenanceWindow(**config["window"]), gate=GatePolicy(**gate),
        soak_s=config["soak_s"], start_at=config["start_at"],
        status=CampaignStatus(row["status"]), current_wave=row["current_wave"],
        wave_succeeded_at=row["wave_succeeded_event_ms"], pause_reason=row["pause_reason"],
        pause_evidence=row["pause_evidence"], max_attempts=config["max_attempts"],
        retry_base_s=config["retry_base_s"], offer_ttl_s=config["offer_ttl_s"],
        targets=Targets(**{k: frozenset(v) for k, v in config["targets"].items()}))


def create_campaign(store: Store, campaign: Campaign, *, name: str, release_id: str,
                    created_by: str, now_ms: int) -> dict[str, Any]:
    row = {"id": campaign.id, "name": name, "release_id": release_id,
           "status": CampaignStatus.DRAFT.value, "config": campaign_config(campaign),
           "current_wave": 0, "wave_succeeded_event_ms": None, "pause_reason": None,
           "pause_evidence": {}, "events": [], "created_wall_ms": now_ms,
           "created_by": created_by, "updated_event_ms": None}
    with store.write() as conn:
        conn.execute(ota_campaigns.insert().values(**row))
    return row


def get_campaign(store: Store, campaign_id: str) -> tuple[dict[str, Any], Campaign] | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(ota_campaigns).where(
            ota_campaigns.c.id == campaign_id)).mappings().first()
        if row is None:
            return None
        release = conn.execute(select(ota_releases).where(
            ota_releases.c.id == row["release_id"])).mappings().one()
    return dict(row), campaign_of(row, release_of(release))


def list_campaigns(store: Store, limit: int = 50, cursor: str | None = None
                   ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of campaigns, newest first, and the next page's cursor."""
    check_limit(limit)
    order = (ota_campaigns.c.created_wall_ms, ota_campaigns.c.id)
    query = select(ota_campaigns).order_by(*(c.desc() for c in order)).limit(limit + 1)
    if cursor:
        query = query.where(after(order, decode_cursor(cursor, CAMPAIGN_SORT),
                                  descending=True))
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    return page(rows, limit, lambda r: (r["created_wall_ms"], r["id"]), CAMPAIGN_SORT)


@dataclass(frozen=True, slots=True)
class Targeting:
    """The cars a campaign's targets select, and every car considered but left out, with
    why (``ota.regions.LOCATION_UNKNOWN``, ``OUTSIDE_REGIONS``, or ``OTHER_VERSION``)."""

    vins: list[str]
    excluded: dict[str, dict[str, Any]]
    regions: tuple[Region, ...] = ()  # as they were when resolved

    def summary(self) -> dict[str, Any]:
        """What the campaign's start event records: counts per reason, and the VINs left
        out for an unknown location (those the operator may want to follow up)."""
        counts: dict[str, int] = {}
        for why in self.excluded.values():
            counts[why["reason"]] = counts.get(why["reason"], 0) + 1
        unknown = sorted(v for v, why in self.excluded.items()
                         if why["reason"] == LOCATION_UNKNOWN)
        return {"vehicles": len(self.vins), "not_targeted": dict(sorted(counts.items())),
                "location_unknown": unknown[:EXCLUDED_LISTED]}


def resolve_targets(store: Store, targets: Targets, component: str) -> Targeting:
    """The cars to update: explicit VINs plus every vehicle whose latest model is one of
    ``targets.models`` (every vehicle that has reported when only regions are named); then,
    with ``targets.regions``, only those whose last known position is in one of them; with
    ``targets.from_versions``, only those whose installed version of ``component`` is one of
    them (known from earlier campaigns: a car never updated by ownercare has no known
    version and is left out). Raises ``KeyError`` naming a region that does not exist."""
    vins = set(targets.vins)
    with store.engine.connect() as conn:
        if targets.models:
            rows = conn.execute(select(latest_signals.c.asset_id, latest_signals.c.value).where(
                latest_signals.c.asset_kind == "vehicle", latest_signals.c.path == MODEL))
            vins |= {vin for vin, model in rows if model in targets.models}
        elif not targets.vins and targets.regions:
            vins = {vin for (vin,) in conn.execute(select(assets.c.asset_id).where(
                assets.c.asset_kind == "vehicle"))}
    selected = sorted(vins)
    excluded: dict[str, dict[str, Any]] = {}
    regions: tuple[Region, ...] = ()
    if targets.regions:
        named = {name: get_region(store, name) for name in sorted(targets.regions)}
        missing = [name for name, region in named.items() if region is None]
        if missing:
            raise KeyError(", ".join(missing))
        regions = tuple(r for r in named.values() if r is not None)
        selected, excluded = in_regions(selected, vehicle_positions(store, selected),
                                        list(regions))
    if targets.from_versions:
        installed = installed_versions(store, component)
        for vin in selected:
            if installed.get(vin) not in targets.from_versions:
                excluded[vin] = {"reason": OTHER_VERSION, "installed": installed.get(vin)}
        selected = [vin for vin in selected if vin not in excluded]
    return Targeting(selected, excluded, regions)


def vehicle_positions(store: Store, vins: Iterable[str]) -> dict[str, Position]:
    """Each car's last known position (latest values); cars without a usable one are left
    out (their location is unknown)."""
    wanted = sorted(set(vins))
    found: dict[str, dict[str, tuple[Any, int]]] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            for vin, path, value, ts in conn.execute(select(
                    latest_signals.c.asset_id, latest_signals.c.path, latest_signals.c.value,
                    latest_signals.c.ts_event_ms).where(
                    latest_signals.c.asset_kind == "vehicle",
                    latest_signals.c.asset_id.in_(wanted[start:start + 500]),
                    latest_signals.c.path.in_((LATITUDE, LONGITUDE)))):
                found.setdefault(vin, {})[path] = (value, ts)
    positions = {}
    for vin, values in found.items():
        if LATITUDE in values and LONGITUDE in values:
            (lat, lat_ts), (lon, lon_ts) = values[LATITUDE], values[LONGITUDE]
            where = position_of(lat, lon, max(lat_ts, lon_ts))
            if where is not None:
                positions[vin] = where
    return positions


# ---------------------------------------------------------------------------- regions


def create_region(store: Store, region: Region, *, created_by: str, now_ms: int
                  ) -> dict[str, Any]:
    row = {"name": region.name, "description": region.description, "areas": region.areas(),
           "created_wall_ms": now_ms, "created_by": created_by}
    try:
        with store.write() as conn:
            conn.execute(ota_regions.insert().values(**row))
    except IntegrityError:
        raise Conflict(f"region {region.name!r} exists") from None
    return row


def list_regions(store: Store, limit: int = 50, cursor: str | None = None
                 ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of regions by name, and the next page's cursor."""
    check_limit(limit)
    query = select(ota_regions).order_by(ota_regions.c.name).limit(limit + 1)
    if cursor:
        query = query.where(after((ota_regions.c.name,),
                                  decode_cursor(cursor, REGION_SORT, (str,))))
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    return page(rows, limit, lambda r: (r["name"],), REGION_SORT)


def region_row(store: Store, name: str) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(ota_regions).where(
            ota_regions.c.name == name)).mappings().first()
    return dict(row) if row else None


def get_region(store: Store, name: str) -> Region | None:
    row = region_row(store, name)
    return region_of(row["name"], row["areas"], row["description"]) if row else None


def unknown_regions(store: Store, names: Iterable[str]) -> list[str]:
    wanted = set(names)
    if not wanted:
        return []
    with store.engine.connect() as conn:
        known = {n for (n,) in conn.execute(select(ota_regions.c.name).where(
            ota_regions.c.name.in_(sorted(wanted))))}
    return sorted(wanted - known)


def delete_region(store: Store, name: str) -> None:
    """Delete a region no draft campaign targets (a started campaign resolved its targets
    at start and keeps the region's areas in its log). ``KeyError`` if it does not exist."""
    with store.write() as conn:
        drafts = conn.execute(select(ota_campaigns.c.name, ota_campaigns.c.config).where(
            ota_campaigns.c.status == CampaignStatus.DRAFT.value)).all()
        users = sorted(n for n, config in drafts if name in config["targets"].get("regions", []))
        if users:
            raise Conflict(f"region {name!r} is targeted by draft campaign(s) "
                           f"{', '.join(users[:5])}")
        if conn.execute(ota_regions.delete().where(ota_regions.c.name == name)).rowcount == 0:
            raise KeyError(name)


def installed_versions(store: Store, component: str) -> dict[str, str]:
    """Each car's installed version of ``component``: the release of its newest succeeded
    OTA action for that component."""
    query = (select(ota_actions.c.vin, ota_releases.c.version, ota_actions.c.updated_event_ms)
             .join(ota_campaigns, ota_campaigns.c.id == ota_actions.c.campaign_id)
             .join(ota_releases, ota_releases.c.id == ota_campaigns.c.release_id)
             .where(ota_releases.c.component == component,
                    ota_actions.c.state == ActionState.SUCCEEDED.value)
             .order_by(ota_actions.c.updated_event_ms))
    with store.engine.connect() as conn:
        return {vin: version for vin, version, _at in conn.execute(query)}


def start_campaign(store: Store, campaign_id: str, now: int) -> tuple[Campaign, int]:
    """Plan every targeted vehicle into its wave and set the campaign going (scheduled until
    its start time). Returns the campaign and the number of vehicles targeted."""
    found = get_campaign(store, campaign_id)
    if found is None:
        raise KeyError(campaign_id)
    row, campaign = found
    if campaign.status is not CampaignStatus.DRAFT:
        raise Conflict(f"campaign is {campaign.status}; only a draft can be started")
    release = get_release(store, row["release_id"])
    if release is not None and rollback_pending(release):
        raise Conflict(awaiting_approval(release))
    try:
        targeting = resolve_targets(store, campaign.targets, campaign.release.component)
    except KeyError as exc:
        raise Conflict(f"the campaign targets region(s) that no longer exist: "
                       f"{exc.args[0]}") from None
    vins = targeting.vins
    if not vins:
        raise Conflict(f"the campaign's targets match no vehicle that has reported "
                       f"(left out: {targeting.summary()['not_targeted'] or 'none'})")
    status = CampaignStatus.RUNNING if now >= campaign.start_at else CampaignStatus.SCHEDULED
    started = campaign.moved(status)
    actions = plan(started, vins, now)
    # Targets are frozen here: cars that later move into (or out of) a region, or change
    # version, do not join (or leave) the campaign. The log keeps what was resolved, and the
    # regions' areas as they were, so a later change to a region cannot blur the record.
    event: dict[str, Any] = {
        "event": "campaign_started" if status is CampaignStatus.RUNNING
        else "campaign_scheduled", "at": now, **targeting.summary()}
    if targeting.regions:
        event["regions"] = {region.name: region.areas() for region in targeting.regions}
    with store.write() as conn:
        conn.execute(ota_actions.insert(), [_action_row(a) for a in actions.values()])
        _save_campaign(conn, started, now, [event])
    return started, len(vins)


def change_status(store: Store, campaign_id: str, to: CampaignStatus, now: int,
                  reason: str) -> Campaign:
    """Manual pause / resume / cancel. Cancel marks the campaign; the OTA timer then cancels
    its actions and tells the cars (engine.cancel)."""
    found = get_campaign(store, campaign_id)
    if found is None:
        raise KeyError(campaign_id)
    _row, campaign = found
    try:
        moved = campaign.moved(to, pause_reason=reason if to is CampaignStatus.PAUSED else None,
                               pause_evidence={} if to is not CampaignStatus.PAUSED
                               else campaign.pause_evidence)
    except ValueError as exc:
        raise Conflict(str(exc)) from None
    with store.write() as conn:
        _save_campaign(conn, moved, now, [{"event": f"campaign_{to.value}", "at": now,
                                           "reason": reason}])
    return moved


def _save_campaign(conn: Any, campaign: Campaign, now: int,
                   events: list[dict[str, Any]]) -> None:
    old = conn.execute(select(ota_campaigns.c.events).where(
        ota_campaigns.c.id == campaign.id)).scalar_one()
    conn.execute(update(ota_campaigns).where(ota_campaigns.c.id == campaign.id).values(
        status=campaign.status.value, current_wave=campaign.current_wave,
        wave_succeeded_event_ms=campaign.wave_succeeded_at, pause_reason=campaign.pause_reason,
        pause_evidence=campaign.pause_evidence, events=[*old, *events], updated_event_ms=now))


# ---------------------------------------------------------------------------- actions


def _action_row(action: Action, waiting: list[str] | None = None) -> dict[str, Any]:
    return {"campaign_id": action.campaign_id, "vin": action.vin, "wave": action.wave,
            "state": action.state.value, "attempt": action.attempt,
            "next_attempt_event_ms": action.next_attempt_at,
            "updated_event_ms": action.updated_at,
            "history": [asdict(t) for t in action.history], "waiting": waiting}


def action_of(row: Any) -> Action:
    return Action(row["campaign_id"], row["vin"], row["wave"], ActionState(row["state"]),
                  row["attempt"], row["next_attempt_event_ms"], row["updated_event_ms"],
                  tuple(Transition(**t) for t in row["history"]))


def load_actions(store: Store, campaign_id: str) -> dict[str, Action]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(ota_actions).where(ota_actions.c.campaign_id == campaign_id)
                            .order_by(ota_actions.c.vin)).mappings()
        return {r["vin"]: action_of(r) for r in rows}


def active_campaigns(store: Store) -> list[Campaign]:
    """Campaigns the OTA timer must step: scheduled, running, or canceled with cars still
    to tell."""
    with store.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(ota_campaigns.c.id).where(
            ota_campaigns.c.status.in_(ACTIVE)).order_by(ota_campaigns.c.created_wall_ms))]
    found = [get_campaign(store, i) for i in ids]
    return [c for f in found if f is not None for c in (f[1],)]


def active_marks(store: Store) -> list[tuple[str, str]]:
    """(id, status) of every campaign the OTA timer steps: what tells it an operator
    started, paused, resumed or canceled one (``ota.timing``)."""
    with store.engine.connect() as conn:
        return [(i, s) for i, s in conn.execute(select(
            ota_campaigns.c.id, ota_campaigns.c.status).where(
            ota_campaigns.c.status.in_(ACTIVE)))]


def open_vins(store: Store, campaign_id: str, up_to_wave: int) -> list[str]:
    """The cars of waves up to ``up_to_wave`` still to be offered the update or with an
    offer open: those whose state the engine's step reads."""
    with store.engine.connect() as conn:
        return [vin for (vin,) in conn.execute(select(ota_actions.c.vin).where(
            ota_actions.c.campaign_id == campaign_id, ota_actions.c.wave <= up_to_wave,
            ota_actions.c.state.in_((ActionState.SCHEDULED.value,
                                     ActionState.OFFERED.value))))]


def save_step(store: Store, before: Mapping[str, Action], result: StepResult, now: int) -> int:
    """Persist what one engine step changed; returns the number of action rows written."""
    changed = [a for vin, a in result.actions.items()
               if a != before.get(vin) or result.waiting.get(vin) is not None]
    with store.write() as conn:
        for action in changed:
            row = _action_row(action, result.waiting.get(action.vin))
            conn.execute(update(ota_actions).where(
                ota_actions.c.campaign_id == action.campaign_id,
                ota_actions.c.vin == action.vin).values(**row))
        cleared = [vin for vin, a in result.actions.items()
                   if vin not in result.waiting and a.state is not ActionState.SCHEDULED]
        if cleared:
            conn.execute(update(ota_actions).where(
                ota_actions.c.campaign_id == result.campaign.id, ota_actions.c.vin.in_(cleared),
                ota_actions.c.waiting.is_not(None)).values(waiting=None))
        _save_campaign(conn, result.campaign, now, result.events)
    return len(changed)


def apply_reports(store: Store, records: Iterable[Mapping[str, Any]]) -> int:
    """Fold vehicles' OTA status records (``kind`` vehicle_ota_status) into their actions.

    A report names its campaign and attempt (``action_id`` = "<campaign id>:<attempt>");
    reports of unknown campaigns or of an old attempt change nothing. Every refusal
    (``rejected``) is kept per vehicle too (``storage.ota_refusals``), with or without a
    campaign.
    Idempotent.
    """
    records = list(records)
    record_refusals(store, records)
    changed = 0
    for record in records:
        data = record.get("data", {})
        campaign_id, attempt = report_target(data)
        if campaign_id is None:
            continue
        found = get_campaign(store, campaign_id)
        if found is None:
            continue
        _row, campaign = found
        with store.write() as conn:
            row = conn.execute(select(ota_actions).where(
                ota_actions.c.campaign_id == campaign_id,
                ota_actions.c.vin == record["id"])).mappings().first()
            if row is None:
                continue
            action = action_of(row)
            moved = apply_report(campaign, action, data["status"], record["ts"],
                                 attempt if attempt is not None else action.attempt,
                                 data.get("detail", ""))
            if moved != action:
                conn.execute(update(ota_actions).where(
                    ota_actions.c.campaign_id == campaign_id,
                    ota_actions.c.vin == action.vin).values(**_action_row(moved)))
                changed += 1
    return changed


def campaign_vehicles(store: Store, campaign_id: str, limit: int = 500
                      ) -> list[dict[str, Any]]:
    """The campaign's cars by VIN: wave, state, attempt, and the latest refusal if any."""
    refusals = campaign_refusals(store, campaign_id)
    with store.engine.connect() as conn:
        rows = conn.execute(select(
            ota_actions.c.vin, ota_actions.c.wave, ota_actions.c.state, ota_actions.c.attempt,
            ota_actions.c.updated_event_ms).where(ota_actions.c.campaign_id == campaign_id)
            .order_by(ota_actions.c.vin).limit(limit)).mappings()
        return [{**r, "refusal": refusals.get(r["vin"])} for r in rows]


# ---------------------------------------------------------------------------- the fleet


def vehicle_snapshots(store: Store, vins: Iterable[str]) -> dict[str, VehicleSnapshot]:
    """What the latest telemetry and the open alerts say about each car, for the gate."""
    wanted = sorted(set(vins))
    values: dict[str, dict[str, Any]] = {}
    stamps: dict[str, int] = {}
    open_alerts: dict[str, list[tuple[str, str]]] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            for vin, path, value, ts in conn.execute(select(
                    latest_signals.c.asset_id, latest_signals.c.path, latest_signals.c.value,
                    latest_signals.c.ts_event_ms).where(
                    latest_signals.c.asset_kind == "vehicle",
                    latest_signals.c.asset_id.in_(chunk), latest_signals.c.path.in_(
                        GATE_SIGNALS))):
                values.setdefault(vin, {})[path] = value
                stamps[vin] = max(stamps.get(vin, 0), ts)
            for vin, alert_type, severity in conn.execute(select(
                    alerts.c.asset_id, alerts.c.type, alerts.c.severity).where(
                    alerts.c.asset_kind == "vehicle", alerts.c.asset_id.in_(chunk),
                    alerts.c.status == "open")):
                open_alerts.setdefault(vin, []).append((alert_type, severity))
    snapshots = {}
    for vin, signals in values.items():
        snapshots[vin] = VehicleSnapshot(
            vin, stamps[vin], model=str(signals.get(MODEL) or ""),
            speed_kmh=_float(signals.get(SPEED)), system_state=signals.get(SYSTEM_STATE),
            soc_percent=_float(signals.get(SOC)), v12_volts=_float(signals.get(V12)),
            charging=bool(signals.get(CHARGING)),
            open_alerts=tuple(sorted(open_alerts.get(vin, []))))
    return snapshots


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def progress(store: Store, campaign_id: str) -> dict[str, Any]:
    """Vehicles per wave and state, and why the waiting ones wait (count per gate)."""
    with store.engine.connect() as conn:
        by_state = conn.execute(select(ota_actions.c.wave, ota_actions.c.state, func.count())
                                .where(ota_actions.c.campaign_id == campaign_id)
                                .group_by(ota_actions.c.wave, ota_actions.c.state)).all()
        waiting = conn.execute(select(ota_actions.c.waiting).where(
            ota_actions.c.campaign_id == campaign_id,
            ota_actions.c.waiting.is_not(None))).all()
    waves: dict[int, dict[str, int]] = {}
    for wave, state, n in by_state:
        waves.setdefault(wave, {})[state] = int(n)
    gates: dict[str, int] = {}
    for (reasons,) in waiting:
        for reason in reasons or []:
            gates[reason] = gates.get(reason, 0) + 1
    return {"waves": waves, "waiting_by_gate": dict(sorted(gates.items()))}


def waiting_vehicles(store: Store, campaign_id: str, limit: int = 500) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(ota_actions.c.vin, ota_actions.c.wave, ota_actions.c.state,
                                   ota_actions.c.attempt, ota_actions.c.waiting).where(
            ota_actions.c.campaign_id == campaign_id, ota_actions.c.waiting.is_not(None))
            .order_by(ota_actions.c.vin).limit(limit)).mappings()
        return [dict(r) for r in rows]


def vehicle_history(store: Store, vin: str) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(ota_actions, ota_campaigns.c.name,
                                   ota_campaigns.c.release_id).join(
            ota_campaigns, ota_campaigns.c.id == ota_actions.c.campaign_id).where(
            ota_actions.c.vin == vin).order_by(ota_actions.c.updated_event_ms.desc())).mappings()
        return [dict(r) for r in rows]
