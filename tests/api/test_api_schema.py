"""Schemathesis against the served OpenAPI schema, over real HTTP, with an admin key:
no request it can generate gets a 5xx or a response that breaks the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.settings import ApiSettings
from storage.store import Store
from tests.apikit import Server, headers_for
from tests.storage.test_store import alert

pytestmark = pytest.mark.integration

EXAMPLES = 40  # per operation, on each database
CHECKS = (not_a_server_error, response_schema_conformance, content_type_conformance,
          status_code_conformance)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, kafka_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    tmp: Path = tmp_path_factory.mktemp("schema")
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp / 'schema.sqlite'}")
    else:
        store = Store(request.getfixturevalue("postgres").new_database())
    for i in range(3):  # something to find, so list and detail answers are not all empty
        store.upsert_alert(alert(id=f"a-{i}", asset_id=f"WCRAAAAAAAAAAAAA{i}"))
        store.upsert_signals([
            ("vehicle", f"WCRAAAAAAAAAAAAA{i}", "Vehicle.VehicleIdentification.Model", "Volt",
             1000 + i),
            ("vehicle", f"WCRAAAAAAAAAAAAA{i}", "Vehicle.Speed", 12.5, 1000 + i),
            ("charger", f"CP-{i}", "status", "Available", 1000 + i)])
    # No rate limit: the generator sends requests as fast as the server answers.
    settings_ = ApiSettings(state_dir=tmp, kafka_url=kafka_url, api_rate_limit_per_s=0)
    with Server(settings_, store) as server:
        yield server.url, headers_for(store, "admin")


def test_no_request_breaks_the_api(served: tuple[str, dict[str, str]]) -> None:
    url, headers = served
    # The live stream never ends: it has its own tests (test_api.py).
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json").exclude(
        path="/alerts/stream")
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()  # raises if the schema itself has an unusable operation

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
        tested.append(operation.label)
    # Every documented operation was exercised (a schema that lost its routes would pass).
    assert {"GET /alerts", "GET /alerts/{alert_id}", "GET /vehicles", "GET /vehicles/{vin}",
            "GET /chargers", "GET /fleet", "POST /keys", "GET /metrics"} <= set(tested), tested
