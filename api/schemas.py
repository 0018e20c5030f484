"""Response models (``XPublic``) and the RFC 9457 problem document.

Every time is epoch ms, and its name says its clock: ``*_event_ms`` is event time (from the
vehicles' and chargers' messages; ``fleet_now_event_ms`` is the newest of them), ``*_wall_ms``
the server's wall clock.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from vocab.severity import Severity

AlertStatus = Literal["open", "resolved"]


class AlertPublic(BaseModel):
    id: str
    asset_kind: Literal["vehicle", "charger"]
    asset_id: str = Field(description="VIN or charger id")
    type: str = Field(description="alert type, e.g. weak_12v_battery")
    severity: Severity
    status: AlertStatus
    first_seen_event_ms: int = Field(
        description="event time (epoch ms) the condition was first raised")
    last_seen_event_ms: int = Field(description="event time (epoch ms) of the latest evidence")
    title: str
    evidence: dict[str, Any] = Field(description="the numbers that triggered the alert")
    predicted_failure_event_ms: int | None = Field(
        None, description="predicted failure, event time (epoch ms), when the detector can "
                          "estimate it")
    recommended_action: str
    detector: str
    detector_version: str
    root_cause_id: str | None = Field(
        None, description="the alert this one is a consequence of (same asset); such an "
                          "alert joins its cause's case and is not announced as a new problem")


NextCursor = Annotated[str | None, Field(
    description="pass as ?cursor= (with the same filters) for the next page; null on the last")]


class AlertPage(BaseModel):
    items: list[AlertPublic]
    next_cursor: NextCursor = None


class SignalPublic(BaseModel):
    path: str = Field(description="VSS path (vehicles) or OCPP name (chargers)")
    value: Any
    ts_event_ms: int = Field(description="event time of the value, epoch ms")
    age_s: float | None = Field(
        description="seconds between this value and fleet_now_event_ms")


class TrendPoint(BaseModel):
    day: str = Field(description="UTC calendar day of the event time, YYYY-MM-DD")
    n: int = Field(description="readings that day")
    min: float
    max: float
    mean: float
    last: float = Field(description="the day's latest reading by event time")


class VehiclePublic(BaseModel):
    vin: str
    first_seen_event_ms: int = Field(description="event time of its first report, epoch ms")
    last_seen_event_ms: int = Field(description="event time of its latest report, epoch ms")
    fleet_now_event_ms: int | None = Field(
        description="the fleet's newest event time, epoch ms")
    signals: list[SignalPublic]
    open_alerts: list[AlertPublic]
    trends: dict[str, list[TrendPoint]] = Field(
        default_factory=dict,
        description="per health indicator (battery12v_resting_v, tire_pressure_<row>_<side>_kpa, "
                    "cell_spread_v, soh_percent) and per numeric signal the car reports (keyed "
                    "by its VSS path, units as in the VSS catalogue), daily points oldest "
                    "first, over the ?days= ending on the day of last_seen_event_ms")
    ota: dict[str, Any] | None = Field(
        None, description="the newest OTA action of the car (campaign, wave, state, attempt, "
        "the gates it waits on); null when it was never targeted")
    open_cases: list[dict[str, Any]] = Field(
        default_factory=list, description="the vehicle's open care cases")


class CheckPublic(BaseModel):
    ok: bool
    detail: str


class ServiceRestartsPublic(BaseModel):
    """What `ownercare run` has done with one of its services."""

    restarts: int = Field(description="times it was restarted after crashing")
    last_exit_status: int | None = Field(
        None, description="exit status of its last crash (-9: killed by SIGKILL)")
    last_restart_wall_ms: int | None = Field(None, description="wall time of its last restart")
    pid: int | None = Field(None, description="its current process id")


class HealthPublic(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckPublic] = Field(default_factory=dict)
    services: dict[str, ServiceRestartsPublic] = Field(
        default_factory=dict,
        description="under `ownercare run`: each service's restarts; empty otherwise")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class ReadinessProblem(Problem):
    """503 from /health/ready: a problem document that also carries every check's result."""

    checks: dict[str, CheckPublic]


Role = Literal["viewer", "agent", "ota_manager", "admin"]


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._@-]*$",
                      description="who or what uses the key; shown in audit trails")
    role: Role


class ApiKeyPublic(BaseModel):
    id: str
    name: str
    role: Role
    created_wall_ms: int = Field(description="wall clock, epoch ms")
    revoked_wall_ms: int | None = Field(None, description="wall clock, epoch ms")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyPublic]
    next_cursor: NextCursor = None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the full key: shown only in this response")
    created_by: str


# ---------------------------------------------------------------------------------------------
# Vehicle list, chargers, fleet overview.


class VehicleSummary(BaseModel):
    vin: str
    model: str | None = Field(description="latest Vehicle.VehicleIdentification.Model")
    first_seen_event_ms: int = Field(description="event time (epoch ms) of the first report")
    last_seen_event_ms: int = Field(description="event time (epoch ms) of the latest report")
    open_alerts: int
    worst_severity: Severity | None = Field(description="worst severity of the open alerts")


class VehiclePage(BaseModel):
    items: list[VehicleSummary]
    next_cursor: NextCursor = None


class ConnectorStatus(BaseModel):
    connector: int
    status: str | None = Field(description="latest OCPP StatusNotification status")
    error_code: str | None
    ts_event_ms: int | None = Field(description="event time of the status, epoch ms")


class ChargerSummary(BaseModel):
    charger_id: str
    first_seen_event_ms: int = Field(description="event time (epoch ms) of the first report")
    last_seen_event_ms: int = Field(description="event time (epoch ms) of the latest report")
    connectors: list[ConnectorStatus]
    open_alerts: int
    worst_severity: Severity | None


class ChargerPage(BaseModel):
    items: list[ChargerSummary]
    next_cursor: NextCursor = None


class ChargingSessionPublic(BaseModel):
    session_id: str = Field(description="<charger>:<connector>:<start_event_ms>")
    charger_id: str
    connector: int
    transaction_id: int | None
    vin: str | None = Field(description="when the charger reported the car")
    start_event_ms: int = Field(description="event time (epoch ms) the session began")
    end_event_ms: int | None = Field(
        description="event time (epoch ms) it ended; null while the session is open")
    end_status: str | None = Field(
        description="Finishing, Available, Faulted, Unavailable or superseded")
    error_code: str | None = Field(description="last OCPP error code other than NoError")
    abnormal: bool = Field(description="ended Faulted/Unavailable or reported an error code")
    energy_wh: float | None
    max_power_w: float | None = Field(description="largest Power.Active.Import")
    offered_w: float | None = Field(description="largest Power.Offered")
    startup_ms: int | None = Field(
        None, description="a duration: plug-in (Preparing) to energy flowing (Charging), ms; "
                          "null if it never started")


class FaultShare(BaseModel):
    abnormal_sessions: int
    judged_sessions: int = Field(description="abnormal sessions whose VIN is known")
    attributed_sessions: int = Field(
        description="judged sessions whose car charged normally elsewhere within 7 days")
    share: float | None = Field(description="attributed / judged; null when none judged")
    rule: str


class ChargerPublic(BaseModel):
    charger_id: str
    first_seen_event_ms: int
    last_seen_event_ms: int
    fleet_now_event_ms: int | None
    connectors: list[ConnectorStatus]
    signals: list[SignalPublic]
    open_alerts: list[AlertPublic]
    alerts: list[AlertPublic] = Field(description="recent alerts, any status, newest first")
    recent_sessions: list[ChargingSessionPublic]
    faults: list[ChargingSessionPublic] = Field(
        description="recent sessions that ended abnormally")
    attributed_fault_share: FaultShare


class AlertCount(BaseModel):
    type: str
    severity: Severity
    count: int


class FaultyCharger(BaseModel):
    charger_id: str
    sessions: int
    abnormal_sessions: int
    open_alerts: int


class FleetOverview(BaseModel):
    fleet_now_event_ms: int | None = Field(description="the fleet's newest event time, ms")
    vehicles: int
    chargers: int
    open_alerts: int
    open_alerts_by_type: list[AlertCount]
    top_faulty_chargers: list[FaultyCharger] = Field(
        description="by abnormal sessions in the window, then open alerts")
    window_days: int
    cases_by_state: dict[str, int] = Field(default_factory=dict)
    overdue_cases: int = 0


# ---------------------------------------------------------------------------- webhooks

WebhookState = Literal["active", "paused"]
DeliveryState = Literal["pending", "delivered", "dead"]


class WebhookCreate(BaseModel):
    url: str = Field(max_length=2048, description="https:// URL that receives signed POSTs",
                     examples=["https://crm.example.com/hooks/ownercare"])
    events: list[str] = Field(
        min_length=1, max_length=32,
        description="event types (alert.created, alert.linked, alert.updated, "
                    "alert.reopened, alert.resolved, alert.superseded, case.<change>), "
                    "families ('alert.*', 'case.*') or '*'",
        examples=[["alert.*"]])
    description: str = Field("", max_length=500)

    @field_validator("description")
    @classmethod
    def _printable(cls, v: str) -> str:
        if "\x00" in v:  # PostgreSQL text cannot hold NUL
            raise ValueError("must not contain NUL characters")
        return v


class WebhookPublic(BaseModel):
    id: str
    url: str
    events: list[str]
    state: WebhookState
    description: str
    created_wall_ms: int = Field(description="wall clock, epoch ms")
    created_by: str = Field(description="name of the API key that registered it")


class WebhookPage(BaseModel):
    items: list[WebhookPublic]
    next_cursor: NextCursor = None


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="the Standard Webhooks signing secret, whsec_<base64 "
                                    "key>: shown only in this response; verify the "
                                    "webhook-signature header with it")


class WebhookDeliveryPublic(BaseModel):
    id: str = Field(description="delivery id (the ownercare-delivery-id header)")
    webhook_id: str
    event_id: str = Field(description="the body's id and the webhook-id header; the same for "
                                      "every webhook and retry")
    event_type: str
    payload: dict[str, Any] = Field(description="the body's data")
    state: DeliveryState
    attempts: int
    next_attempt_wall_ms: int = Field(
        description="wall clock, epoch ms, of the next try (pending)")
    last_status_code: int | None = None
    last_error: str | None = None
    created_wall_ms: int = Field(description="wall clock, epoch ms, when the event was "
                                             "recorded (the body's created_wall_ms)")
    delivered_wall_ms: int | None = Field(None, description="wall clock, epoch ms")


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDeliveryPublic]
    next_cursor: NextCursor = None
