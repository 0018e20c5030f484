"""The device contract as documents: the AsyncAPI 3 description of the MQTT interface and a
JSON Schema per payload, generated from the catalogue this deployment validates against (the
pinned VSS release and the configured overlays), so a device maker reads what the bridge
accepts. ``docs/contract/`` holds the same documents for the pinned release alone."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from api.auth import Viewer
from api.schemas import Problem
from ingest.device_docs import render

router = APIRouter(prefix="/contract", tags=["contract"])


def _documents(request: Request) -> dict[str, str]:
    docs: dict[str, str] | None = getattr(request.app.state, "contract_documents", None)
    if docs is None:  # rendered once: the catalogue does not change while the API runs
        docs = request.app.state.contract_documents = render(request.app.state.catalogue)
    return docs


@router.get("")
def list_documents(request: Request, _who: Viewer) -> dict[str, Any]:
    """The documents' names and addresses: ``asyncapi.json`` and one ``<payload>.schema.json``
    per MQTT payload kind; ``catalogue`` names the VSS release and the overlays applied."""
    catalogue = request.app.state.catalogue
    return {"catalogue": {"vss": catalogue.release, "signals": len(catalogue),
                          "overlays": list(catalogue.overlays)},
            "items": [{"name": name, "url": f"/contract/{name}"}
                      for name in sorted(_documents(request))]}


@router.get("/{name}", responses={404: {"model": Problem}})
def get_document(name: str, request: Request, _who: Viewer) -> Response:
    """One document, as ``docs/contract/`` has it (for this deployment's catalogue)."""
    text = _documents(request).get(name)
    if text is None:
        raise HTTPException(404, f"no contract document {name!r}; GET /contract lists them")
    return Response(orjson.dumps(orjson.loads(text)), media_type="application/json")
