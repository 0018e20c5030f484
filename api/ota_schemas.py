"""Request and response models of the OTA endpoints (``api/routes/ota.py``).

Campaign and action times are event time (``*_event_ms``: the fleet's clock, which the
rollout runs on); when staff created a release, campaign or region is wall clock
(``created_wall_ms``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator

from api.schemas import NextCursor

# Text without NUL or other control characters (PostgreSQL refuses NUL in text columns).
PLAIN = r"^[^\x00-\x1f\x7f]*$"
UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=PLAIN)]

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
RegionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                                  description="e.g. norway, eu-north")]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class ReleaseCreate(BaseModel):
    version: str = Field(max_length=64, pattern=PLAIN,
                         description="semantic version, e.g. 2.4.1")
    component: str = Field(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                           description="the ECU / software component")
    artifact_url: str = Field(max_length=2000, pattern=r"^https?://[^\x00-\x20\x7f]+$")
    size: int = Field(gt=0, le=2**40, description="artifact size, bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    notes: str = Field("", max_length=10_000, pattern=r"^[^\x00]*$")
    rollback: bool = Field(False, description="a deliberate downgrade; vehicles accept a "
                                              "lower version only from such a release")


class RollbackApproval(BaseModel):
    """The audit of a rollback release: who asked for it, and which second admin key
    approved it when (wall clock). No campaign may use it while ``state`` is pending."""

    state: Literal["pending", "approved"]
    requested_by: str
    requested_wall_ms: int = Field(description="wall clock, epoch ms")
    approved_by: str | None = None
    approved_wall_ms: int | None = Field(None, description="wall clock, epoch ms")


class ReleasePublic(ReleaseCreate):
    id: str
    created_wall_ms: int = Field(description="wall clock, epoch ms")
    created_by: str
    approval: RollbackApproval | None = Field(
        None, description="for a rollback release: its approval by a second admin key "
        "(POST /ota/releases/{id}/approve); null for an ordinary release")


class ReleasePage(BaseModel):
    items: list[ReleasePublic]
    next_cursor: NextCursor = None


class WaveIn(BaseModel):
    percent: float = Field(gt=0, le=100, description="cumulative share of the fleet")
    success_threshold: float = Field(0.95, gt=0, le=1)
    error_threshold: float = Field(0.05, gt=0, le=1)


class WindowIn(BaseModel):
    start: str = Field("00:00", pattern=HHMM, description="vehicle local time")
    end: str = Field("23:59", pattern=HHMM, description="may be before start (overnight)")
    timezone: str = Field("UTC", max_length=64, pattern=PLAIN,
                          description="IANA zone for cars that do not report their own")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone like Europe/Berlin") from None
        return v


class GateIn(BaseModel):
    min_soc_percent: float = Field(30.0, ge=0, le=100)
    min_12v_volts: float = Field(12.2, ge=0, le=20)
    allow_while_charging: bool = False
    max_state_age_s: float = Field(6 * 3600, gt=0)
    blocking_alert_types: list[Label] = Field(["weak_12v_battery"], max_length=50)


class TargetsIn(BaseModel):
    models: list[Label] = Field([], max_length=100)
    regions: list[RegionName] = Field(
        [], max_length=100, description="only cars whose last known position is in one of "
        "these regions (``/ota/regions``); cars of unknown position are left out and listed "
        "in the start event. Alone, every car in the regions")
    from_versions: list[Label] = Field(
        [], max_length=100, description="only cars whose installed version of the release's "
        "component is one of these (known from earlier OTA campaigns)")
    vins: list[str] = Field([], max_length=100_000)


class CampaignCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=PLAIN)
    release_id: str = Field(pattern=UUID)
    waves: list[WaveIn] = Field(
        [WaveIn(percent=1), WaveIn(percent=10), WaveIn(percent=100)], min_length=1,
        max_length=20)
    window: WindowIn = WindowIn()
    gate: GateIn = GateIn()
    soak_s: float = Field(24 * 3600, ge=0, le=90 * 86400)
    start_event_ms: int = Field(0, ge=0, le=2**62,
                                description="event time (epoch ms) to start; 0 = at once")
    max_attempts: int = Field(3, ge=1, le=20)
    retry_base_s: float = Field(900, gt=0, le=86400)
    offer_ttl_s: float = Field(3600, gt=0, le=30 * 86400)
    targets: TargetsIn = Field(description="explicit VINs and/or vehicle models and/or "
                               "regions; resolved once, when the campaign starts")


class CampaignPublic(BaseModel):
    id: str
    name: str
    release_id: str
    state: Literal["draft", "scheduled", "running", "paused", "completed", "canceled"]
    config: dict[str, Any] = Field(description="the campaign as created (start_event_ms, "
                                               "waves, window, gate, targets, ...)")
    current_wave: int
    wave_succeeded_event_ms: int | None = Field(
        description="event time (epoch ms) the current wave reached its success threshold")
    pause_reason: str | None
    pause_evidence: dict[str, Any]
    events: list[dict[str, Any]] = Field(
        description="the campaign's log, oldest first; each entry's at_event_ms is the fleet's "
                    "event time when it happened")
    created_wall_ms: int = Field(description="wall clock, epoch ms")
    created_by: str
    updated_event_ms: int | None = Field(
        description="event time (epoch ms) of the latest change by the rollout or an "
                    "operator; null for a draft nobody started")
    progress: dict[str, Any] | None = Field(
        None, description="vehicles per wave and state; waiting vehicles per gate")


class CampaignPage(BaseModel):
    items: list[CampaignPublic]
    next_cursor: NextCursor = None


class CampaignChange(BaseModel):
    reason: str = Field("", max_length=500, pattern=PLAIN)


class WaitingVehicle(BaseModel):
    vin: str
    wave: int
    state: str
    attempt: int
    waiting: list[str] = Field(description="the gates the car failed at the last step")


class OtaActionPublic(BaseModel):
    campaign_id: str
    name: str
    release_id: str
    vin: str
    wave: int
    state: str
    attempt: int
    next_attempt_event_ms: int = Field(description="event time (epoch ms) of the next offer")
    updated_event_ms: int = Field(description="event time (epoch ms) of the latest change")
    history: list[dict[str, Any]] = Field(
        description="its transitions, oldest first: {at_event_ms, state, attempt, reason}")
    waiting: list[str] | None


class BoxIn(BaseModel):
    """WGS84 degrees; ``min_lon > max_lon`` crosses the antimeridian (as a GeoJSON bbox)."""

    min_lat: Latitude
    min_lon: Longitude
    max_lat: Latitude
    max_lon: Longitude


class RegionCreate(BaseModel):
    name: RegionName
    description: str = Field("", max_length=2000, pattern=PLAIN)
    boxes: list[BoxIn] = Field([], max_length=200)
    polygons: list[Annotated[list[tuple[Latitude, Longitude]],
                             Field(min_length=3, max_length=1001)]] = Field(
        [], max_length=200, description="rings of [lat, lon] points, closed or not; simple "
        "(not crossing themselves), no edge over 180 degrees of longitude")


class RegionPublic(BaseModel):
    name: str
    description: str
    areas: dict[str, Any] = Field(description="{boxes: [...], polygons: [[[lat, lon], ...]]}")
    created_wall_ms: int = Field(description="wall clock, epoch ms")
    created_by: str


class RegionPage(BaseModel):
    items: list[RegionPublic]
    next_cursor: NextCursor = None


class ExcludedVehicle(BaseModel):
    vin: str
    reason: Literal["location_unknown", "outside_regions", "other_version"]
    lat: float | None = None
    lon: float | None = None
    located_event_ms: int | None = Field(
        None, description="event time (epoch ms) of the position used")
    installed: str | None = Field(None, description="the installed version, if known")


class TargetsPreview(BaseModel):
    vehicles: int = Field(description="cars the campaign would target if started now")
    vins: list[str]
    not_targeted: dict[str, int] = Field(description="cars left out, per reason")
    excluded: list[ExcludedVehicle]


class Refusal(BaseModel):
    """An offer a car refused, as it reported it."""

    vin: str
    ts_event_ms: int = Field(description="event time (epoch ms) of the car's report")
    reason: str = Field(description="the car's code, e.g. bad_signature, expired, not_newer, "
                        "not_ready, wrong_vehicle, malformed; unspecified without one")
    detail: str
    campaign_id: str | None = Field(
        description="the campaign the refusal names; null when the car could not "
        "authenticate the command (e.g. bad_signature), which then changes no campaign")
    attempt: int | None
    claimed_campaign_id: str | None = Field(
        description="for a refusal naming no campaign: the campaign the unauthenticated "
        "command claimed to be, when the car's detail says (unverified)")
    version: str | None


class CampaignVehicle(BaseModel):
    vin: str
    wave: int
    state: str
    attempt: int
    updated_event_ms: int = Field(description="event time (epoch ms) of the latest change")
    refusal: Refusal | None = Field(description="the car's latest refusal of this campaign")


class VehicleOta(BaseModel):
    vin: str
    actions: list[OtaActionPublic] = Field(description="its OTA actions, newest first")
    refusals: list[Refusal] = Field(description="its latest refusals, newest first, with "
                                    "or without a campaign")
