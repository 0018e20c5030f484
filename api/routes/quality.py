"""Detector quality from staff feedback: how often each detector's alerts were right."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import Viewer
from api.case_schemas import QualityReport, QualityRow
from api.remote_schemas import ContactQuality
from api.routes.cases import CasesDep
from storage.surveys import contact_quality

router = APIRouter(tags=["quality"])


@router.get("/quality", response_model=QualityReport)
def get_quality(cases: CasesDep, _who: Viewer) -> QualityReport:
    """Per alert type, detector and detector version: alerts raised, alerts staff labelled
    confirmed / false positive when closing their case, and the confirmed precision
    (``confirmed / (confirmed + false_positive)``, null until something is labelled); and
    ``contact``, the quality of contact (``GET /quality/contact``)."""
    return QualityReport(items=[QualityRow(**r) for r in cases.quality()],
                         contact=ContactQuality(**contact_quality(cases.store)))
