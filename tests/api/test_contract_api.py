"""GET /contract: the device contract documents for this deployment's catalogue, over real
HTTP: the pinned release's are the files in docs/contract/, an overlay's private signal is in
the telemetry schema, and a bad overlay stops the API before it serves anything."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from config.settings import ApiSettings
from ingest.catalogue import OverlayError
from storage.store import Store
from tests.apikit import Server, headers_for
from tests.overlaykit import HEAT_PUMP_OVERLAY

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "contract"
TELEMETRY = "vehicleTelemetry.schema.json"


def test_the_documents_are_the_pinned_contract_and_need_a_key(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'api.sqlite'}")
    with Server(ApiSettings(state_dir=tmp_path), store) as server, \
            httpx.Client(base_url=server.url, headers=headers_for(store, "viewer")) as client:
        index = client.get("/contract")
        assert index.status_code == 200
        names = [item["name"] for item in index.json()["items"]]
        assert sorted(names) == sorted(p.name for p in DOCS.glob("*.json"))
        assert index.json()["catalogue"]["overlays"] == []
        for name in names:
            resp = client.get(f"/contract/{name}")
            assert resp.status_code == 200, name
            assert resp.headers["content-type"] == "application/json"
            assert resp.json() == json.loads((DOCS / name).read_text()), name
        missing = client.get("/contract/nope.json")
        assert missing.status_code == 404
        assert "GET /contract lists them" in missing.json()["detail"]
        assert httpx.get(f"{server.url}/contract/{TELEMETRY}").status_code == 401


def test_an_overlays_private_signal_is_documented(tmp_path: Path) -> None:
    overlay = tmp_path / "acme.vspec"
    overlay.write_text(HEAT_PUMP_OVERLAY)
    store = Store(f"sqlite:///{tmp_path / 'api.sqlite'}")
    settings = ApiSettings(state_dir=tmp_path, vss_overlays=str(overlay))
    with Server(settings, store) as server, \
            httpx.Client(base_url=server.url, headers=headers_for(store, "viewer")) as client:
        assert client.get("/contract").json()["catalogue"]["overlays"] == [str(overlay)]
        schema = client.get(f"/contract/{TELEMETRY}").json()
        text = json.dumps(schema)
        assert "Vehicle.Acme.HeatPump.Cop" in text
        assert "Vehicle.Acme.HeatPump.Cop" not in (DOCS / TELEMETRY).read_text()


def test_a_bad_overlay_stops_the_api_naming_the_file(tmp_path: Path) -> None:
    overlay = tmp_path / "broken.vspec"
    overlay.write_text("Vehicle.Acme.X:\n  type: sensor\n  datatype: nonsense\n")
    with pytest.raises(OverlayError, match="broken.vspec"):
        create_app(ApiSettings(state_dir=tmp_path, vss_overlays=str(overlay)),
                   Store(f"sqlite:///{tmp_path / 'api.sqlite'}"))
