"""Request and response models of care cases and detector quality."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.remote_schemas import ContactQuality
from api.schemas import AlertPublic, NextCursor, Problem
from care.casework import CaseState, Outcome
from vocab.severity import Severity

_MAX_INT = 2_147_483_647  # case ids and versions are 32-bit integers in the database


def _printable(value: str) -> str:
    """Free text must carry something, and nothing PostgreSQL's text type refuses (pydantic
    already refuses lone surrogates)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(_printable)]
Assignee = Annotated[str, Field(min_length=1, max_length=128,
                                description="who works the case (a staff name or id)"),
                     AfterValidator(_printable)]
Version = Annotated[int | None, Field(
    ge=1, le=_MAX_INT,
    description="the case version you last read; if it moved on, the change is refused with "
                "409 instead of silently overwriting a colleague's work")]


class CasePublic(BaseModel):
    id: int
    asset_kind: Literal["vehicle", "charger"]
    asset_id: str = Field(description="VIN or charger id")
    state: CaseState
    severity: Severity = Field(description="the worst severity any of its alerts reached")
    assignee: str | None
    opened_event_ms: int = Field(
        description="event time (epoch ms) the alert that opened it was first seen")
    due_event_ms: int = Field(
        description="opened_event_ms + the SLA of its severity (event time, epoch ms)")
    closed_wall_ms: int | None = Field(description="wall clock (epoch ms) when staff closed it")
    updated_wall_ms: int = Field(description="wall clock (epoch ms) of the latest change, by "
                                             "staff or by an alert")
    version: int = Field(description="grows with every change; send it back to guard writes")
    overdue: bool = Field(description="open and due_event_ms before fleet_now_event_ms")


class CasePage(BaseModel):
    items: list[CasePublic]
    next_cursor: NextCursor = None
    fleet_now_event_ms: int | None = Field(
        description="the fleet's newest event time (epoch ms): the 'now' of overdue")


class CaseAlertPublic(AlertPublic):
    outcome: Outcome | None = Field(description="staff label, set when the case ended")


class CaseEventPublic(BaseModel):
    id: int
    at_event_ms: int | None = Field(
        description="'system' entries: event time (epoch ms) of the alert change recorded; "
                    "null for staff actions")
    at_wall_ms: int | None = Field(
        description="wall clock (epoch ms) when the entry was written; null only on system "
                    "entries migrated from an older schema")
    actor: str = Field(description="'system' or the name of the API key that acted")
    action: Literal["opened", "alert_linked", "severity_changed", "transitioned", "assigned",
                    "note", "command"]
    from_state: CaseState | None
    to_state: CaseState | None
    detail: dict[str, Any]


class CaseDetail(CasePublic):
    fleet_now_event_ms: int | None
    alerts: list[CaseAlertPublic]
    events: list[CaseEventPublic] = Field(description="the audit trail, oldest first")
    allowed_transitions: list[CaseState]


class CaseTransition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: CaseState
    note: Text | None = None
    outcomes: dict[Annotated[str, Field(max_length=36)], Outcome] | None = Field(
        None, description="per-alert label overrides {alert_id: outcome}, when the case ends; "
                          "by default resolved confirms every alert, false_positive refutes "
                          "them, no_action_needed labels none")
    version: Version = None


class CaseAssign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: Assignee | None = Field(description="null takes the case away from everyone")
    version: Version = None


class CaseNoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Text


class TransitionProblem(Problem):
    """409 for an illegal transition: also lists the moves that are legal now."""

    allowed: list[CaseState]


class QualityRow(BaseModel):
    alert_type: str
    detector: str
    detector_version: str
    alerts: int = Field(description="alerts raised")
    confirmed: int = Field(description="labelled confirmed by staff")
    false_positive: int = Field(description="labelled false positive by staff")
    precision: float | None = Field(
        description="confirmed / (confirmed + false_positive); null while nothing is labelled")


class QualityReport(BaseModel):
    items: list[QualityRow]
    contact: ContactQuality | None = Field(
        None, description="quality of contact: the owners' satisfaction, contact timings, "
                          "precision before and after remote commands' labels (also at "
                          "GET /quality/contact)")
