"""Request and response models of remote support commands, owner surveys and follow-up
tasks, and the quality-of-contact report."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from care.commands import CommandKind, CommandState

CommandId = Annotated[str, Field(
    min_length=1, max_length=36, pattern=r"^[A-Za-z0-9._:-]+$",
    description="your idempotency key: the same id again returns the same command")]


class CommandCreate(BaseModel):
    kind: CommandKind = Field(description="snapshot, battery_test, wake, or clear_dtc "
                                          "(admin only)")
    id: CommandId | None = None
    ttl_s: int | None = Field(
        None, ge=60, le=7 * 86_400,
        description="how long the command stays valid, seconds of the fleet's event time "
                    "(default 6 h): the car refuses it after that, the cloud expires it")
    alert_id: str | None = Field(None, max_length=36, pattern=r"^[A-Za-z0-9-]+$",
                                 description="the alert the command is to confirm or refute; "
                                             "a battery_test of a case defaults to its "
                                             "weak_12v_battery alert")


class VehicleCommandCreate(CommandCreate):
    case_id: int | None = Field(None, ge=1, le=2_147_483_647,
                                description="the case it belongs to (default: the car's open "
                                            "case, if any)")


class CommandEventPublic(BaseModel):
    id: int
    at_wall_ms: int
    at_event_ms: int | None = Field(description="the car's event time, for its reports and "
                                                "expiry")
    actor: str = Field(description="the API key's name, 'system' or 'vehicle'")
    state: CommandState
    detail: dict[str, Any]


class CommandPublic(BaseModel):
    id: str
    vin: str
    kind: CommandKind
    state: CommandState
    case_id: int | None
    alert_id: str | None
    params: dict[str, Any]
    requested_by: str
    requested_wall_ms: int
    issued_event_ms: int = Field(description="the fleet's event time when it was requested")
    expires_event_ms: int = Field(description="after this event time the car refuses it and "
                                              "the cloud expires it")
    sent_wall_ms: int | None
    updated_wall_ms: int
    result_event_ms: int | None
    result: dict[str, Any] | None
    reason: str | None = Field(description="why the car refused it or the test failed")
    detail: str | None
    verdict: Literal["confirmed", "false_positive"] | None = Field(
        description="what the result said about alert_id (and labelled it with)")


class CommandDetail(CommandPublic):
    events: list[CommandEventPublic] = Field(description="every step, oldest first")


class CommandList(BaseModel):
    items: list[CommandPublic]


class TaskPublic(BaseModel):
    id: int
    case_id: int
    survey_id: str | None
    kind: str
    for_role: str
    state: Literal["open", "done"]
    created_wall_ms: int
    closed_wall_ms: int | None
    closed_by: str | None
    detail: dict[str, Any]


class TaskList(BaseModel):
    items: list[TaskPublic]


class TaskClose(BaseModel):
    note: str | None = Field(None, max_length=4000, pattern=r"^[^\x00]*$")


class SatisfactionRow(BaseModel):
    key: str
    answers: int
    mean_score: float
    csat: float = Field(description="share of answers scoring 4 or 5")


class TimingRow(BaseModel):
    channel: Literal["remote", "owner", "service", "none"] = Field(
        description="the first contact: a remote command, a call to the owner, a service "
                    "booked directly, or none before the case closed")
    cases: int
    median_first_contact_ms: int | None
    median_resolution_ms: int | None
    sla_kept: float


class PrecisionRow(BaseModel):
    alert_type: str
    detector: str
    staff_labels: int
    command_labels: int
    precision_before: float | None = Field(description="from staff labels alone")
    precision_after: float | None = Field(description="with the remote commands' labels")


class ContactQuality(BaseModel):
    answers: int
    satisfaction: dict[Literal["alert_type", "detector", "severity", "agent", "month"],
                       list[SatisfactionRow]]
    timings: list[TimingRow]
    precision: list[PrecisionRow]
