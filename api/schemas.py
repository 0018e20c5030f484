"""Response models (``XPublic``) and the RFC 9457 problem document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Severity = Literal["info", "warning", "critical"]
AlertStatus = Literal["open", "resolved"]


class AlertPublic(BaseModel):
    id: str
    asset_kind: Literal["vehicle", "charger"]
    asset_id: str = Field(description="VIN or charger id")
    type: str = Field(description="alert type, e.g. weak_12v_battery")
    severity: Severity
    status: AlertStatus
    first_seen: int = Field(description="event time (epoch ms) the condition was first raised")
    last_seen: int = Field(description="event time (epoch ms) of the latest evidence")
    title: str
    evidence: dict[str, Any] = Field(description="the numbers that triggered the alert")
    predicted_failure_ts: int | None = Field(
        None, description="predicted failure (epoch ms), when the detector can estimate it")
    recommended_action: str
    detector: str
    detector_version: str


class AlertPage(BaseModel):
    items: list[AlertPublic]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


class SignalPublic(BaseModel):
    path: str = Field(description="VSS path (vehicles) or OCPP name (chargers)")
    value: Any
    ts: int = Field(description="event time of the value, epoch ms")
    age_s: float | None = Field(
        description="seconds between this value and the fleet's newest event time")


class VehiclePublic(BaseModel):
    vin: str
    first_seen: int
    last_seen: int
    fleet_now: int | None = Field(description="the fleet's newest event time, epoch ms")
    signals: list[SignalPublic]
    open_alerts: list[AlertPublic]


class CheckPublic(BaseModel):
    ok: bool
    detail: str


class HealthPublic(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckPublic] = Field(default_factory=dict)


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
    created_at: int = Field(description="wall-clock epoch ms")
    revoked_at: int | None = None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the full key: shown only in this response")
    created_by: str
