"""Fleet overview: open alerts by type and severity, asset counts, top faulty chargers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import Viewer
from api.deps import StoreDep
from api.routes.cases import CasesDep
from api.schemas import FleetOverview, Problem
from storage import views

router = APIRouter(prefix="/fleet", tags=["fleet"])


@router.get("", response_model=FleetOverview, responses={422: {"model": Problem}})
def fleet_overview(
    store: StoreDep,
    cases: CasesDep,
    _who: Viewer,
    days: Annotated[int, Query(ge=1, le=366, description="faulty-charger window, ending at "
                                                          "the fleet's newest event time")] = 30,
    top: Annotated[int, Query(ge=1, le=100, description="faulty chargers to list")] = 10,
) -> FleetOverview:
    """The fleet at a glance. ``top_faulty_chargers`` ranks chargers by sessions that ended
    abnormally in the window, then by open alerts. ``cases_by_state`` counts every state
    (zeros included); ``overdue_cases`` are open past their due time by the fleet's event
    time."""
    overview = views.fleet_overview(store, days=days, top=top)
    summary = cases.summary()
    return FleetOverview(**overview, cases_by_state=summary["by_state"],
                         overdue_cases=summary["overdue"])
