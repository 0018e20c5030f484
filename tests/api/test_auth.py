"""API keys and roles, request size and rate limits, CORS: over real HTTP, on SQLite and
PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import ApiSettings
from storage.keys import KeyStore
from storage.store import Store
from tests.apikit import Server, headers_for

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    return Store(request.getfixturevalue("postgres").new_database())


@pytest.fixture
def settings(kafka_url: str, tmp_path: Path) -> ApiSettings:
    return ApiSettings(state_dir=tmp_path, kafka_url=kafka_url)


@pytest.fixture
def api(store: Store, settings: ApiSettings) -> Iterator[str]:
    with Server(settings, store) as server:
        yield server.url


def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    return body


def test_every_secured_route_needs_a_valid_key(api: str, store: Store) -> None:
    spec = httpx.get(f"{api}/openapi.json").json()
    gets = [p for p, item in spec["paths"].items() if "get" in item and "security" in item["get"]
            and "{" not in p and not p.endswith("/stream")]
    assert "/alerts" in gets
    assert "/keys" in gets
    for path in gets:
        missing = problem(httpx.get(f"{api}{path}"), 401)
        assert "Authorization: Bearer" in missing["detail"]
        wrong = problem(httpx.get(f"{api}{path}", headers={"Authorization": "Bearer oc_nope"}),
                        401)
        assert "unknown, malformed or revoked" in wrong["detail"]
    assert httpx.get(f"{api}/alerts").headers["www-authenticate"] == "Bearer"
    # The probes stay open: orchestrators call them without credentials.
    assert httpx.get(f"{api}/health/live").status_code == 200


def test_roles_are_enforced(api: str, store: Store) -> None:
    for role in ("viewer", "agent", "ota_manager", "admin"):
        headers = headers_for(store, role)
        assert httpx.get(f"{api}/alerts", headers=headers).status_code == 200, role
        keys = httpx.get(f"{api}/keys", headers=headers)
        if role == "admin":
            assert keys.status_code == 200
        else:
            body = problem(keys, 403)
            assert f"role {role!r}" in body["detail"]
            assert "admin" in body["detail"]
    # X-API-Key works as well as the bearer header.
    _row, key = KeyStore(store).create("header-user", "viewer")
    assert httpx.get(f"{api}/alerts", headers={"X-API-Key": key}).status_code == 200
    assert "X-API-Key: <key>" in problem(httpx.get(f"{api}/alerts"), 401)["detail"]
    problem(httpx.get(f"{api}/alerts", headers={"X-API-Key": "oc_nope"}), 401)


def test_keys_are_created_once_listed_without_secrets_and_revoked(api: str,
                                                                   store: Store) -> None:
    admin = headers_for(store, "admin", "root")
    created = httpx.post(f"{api}/keys", json={"name": "care desk 1", "role": "agent"},
                         headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["role"] == "agent"
    assert body["created_by"] == "root"
    agent = {"Authorization": f"Bearer {body['key']}"}
    assert httpx.get(f"{api}/alerts", headers=agent).status_code == 200
    assert created.headers["location"] == f"/keys/{body['id']}"
    assert httpx.get(f"{api}{created.headers['location']}", headers=admin).json() == {
        k: body[k] for k in ("id", "name", "role", "created_wall_ms", "revoked_wall_ms")}
    page = httpx.get(f"{api}/keys", headers=admin).json()
    assert page["next_cursor"] is None
    listed = page["items"]
    assert body["id"] in {k["id"] for k in listed}
    assert all("key" not in k and "secret_sha256" not in k for k in listed)
    assert body["key"] not in httpx.get(f"{api}/keys", headers=admin).text
    # Only the hash is stored.
    with store.engine.connect() as conn:
        dumped = str(conn.exec_driver_sql("SELECT * FROM api_keys").fetchall())
    assert body["key"].split("_", 2)[2] not in dumped
    revoked = httpx.delete(f"{api}/keys/{body['id']}", headers=admin)
    assert (revoked.status_code, revoked.content) == (204, b"")  # as every DELETE answers
    assert httpx.get(f"{api}/keys/{body['id']}", headers=admin).json()[
        "revoked_wall_ms"] is not None  # kept for the audit trail
    assert httpx.delete(f"{api}/keys/{body['id']}", headers=admin).status_code == 204
    problem(httpx.get(f"{api}/alerts", headers=agent), 401)
    problem(httpx.delete(f"{api}/keys/nope", headers=admin), 404)
    problem(httpx.get(f"{api}/keys/nope", headers=admin), 404)
    for bad in ({"name": "", "role": "agent"}, {"name": "x", "role": "root"},
                {"name": "\nx", "role": "viewer"}, {"role": "viewer"}):
        problem(httpx.post(f"{api}/keys", json=bad, headers=admin), 422)


def test_keys_are_listed_a_page_at_a_time(api: str, store: Store) -> None:
    admin = headers_for(store, "admin", "root")
    for i in range(4):
        KeyStore(store).create(f"desk {i}", "viewer")
    everything = httpx.get(f"{api}/keys", headers=admin).json()["items"]
    assert len(everything) == 5
    seen: list[str] = []
    cursor = None
    while True:
        page = httpx.get(f"{api}/keys", headers=admin,
                         params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) <= 2
        seen += [k["id"] for k in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [k["id"] for k in everything]
    stamps = [(k["created_wall_ms"], k["id"]) for k in everything]
    assert stamps == sorted(stamps)  # oldest first
    body = problem(httpx.get(f"{api}/keys", headers=admin, params={"cursor": "x"}), 422)
    assert body["errors"][0]["loc"] == ["query", "cursor"]


def test_a_key_over_its_rate_gets_429_with_retry_after(kafka_url: str, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'rate.sqlite'}")
    settings = ApiSettings(state_dir=tmp_path, kafka_url=kafka_url, api_rate_limit_per_s=0.5,
                           api_rate_limit_burst=3)
    busy, calm = headers_for(store, "viewer", "busy"), headers_for(store, "viewer", "calm")
    with Server(settings, store) as server:
        codes = [httpx.get(f"{server.url}/alerts", headers=busy).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = httpx.get(f"{server.url}/alerts", headers=busy)
        body = problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        assert "0.5 requests/s" in body["detail"]
        # The limit is per key: another key is unaffected.
        assert httpx.get(f"{server.url}/alerts", headers=calm).status_code == 200


def test_oversized_bodies_get_413_before_they_are_read(kafka_url: str, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'size.sqlite'}")
    settings = ApiSettings(state_dir=tmp_path, kafka_url=kafka_url, api_max_body_bytes=2048)
    admin = headers_for(store, "admin")
    with Server(settings, store) as server:
        big = {"name": "x", "role": "viewer", "padding": "y" * 5000}
        body = problem(httpx.post(f"{server.url}/keys", json=big, headers=admin), 413)
        assert "2048 bytes" in body["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b'{"name": "x", "role": "viewer", "padding": "'
            for _ in range(10):
                yield b"z" * 500
            yield b'"}'

        problem(httpx.post(f"{server.url}/keys", content=chunks(),
                           headers={**admin, "Content-Type": "application/json"}), 413)
        small = httpx.post(f"{server.url}/keys", json={"name": "ok", "role": "viewer"},
                           headers=admin)
        assert small.status_code == 201


def test_cors_allows_only_configured_origins(kafka_url: str, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'cors.sqlite'}")
    settings = ApiSettings(state_dir=tmp_path, kafka_url=kafka_url,
                           api_cors_origins="https://console.example.com")
    with Server(settings, store) as server:
        preflight = {"Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "authorization"}
        ok = httpx.options(f"{server.url}/alerts", headers={
            "Origin": "https://console.example.com", **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://console.example.com"
        other = httpx.options(f"{server.url}/alerts", headers={
            "Origin": "https://evil.example.net", **preflight})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("origins", ["console.example.com", "ftp://x.example", "https://a/b"])
def test_bad_cors_origins_are_refused_with_the_setting_named(origins: str) -> None:
    with pytest.raises(ValueError, match="OWNERCARE_API_CORS_ORIGINS"):
        ApiSettings(api_cors_origins=origins)


def test_nul_characters_in_path_or_query_are_422_not_500(api: str, store: Store) -> None:
    viewer = headers_for(store, "viewer")
    body = problem(httpx.get(f"{api}/alerts", params={"vin": "\x00x"}, headers=viewer), 422)
    assert "NUL" in body["detail"]
    problem(httpx.get(f"{api}/alerts/a%00b", headers=viewer), 422)


def test_failed_authentications_are_limited_per_address_before_the_lookup(
        tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'guess.sqlite'}")
    good = headers_for(store, "viewer")
    settings = ApiSettings(state_dir=tmp_path, api_auth_failures_per_s=0.5,
                           api_auth_failure_burst=3)
    with Server(settings, store) as server:
        keys = server.app.state.keys
        lookups: list[str] = []
        real = keys.authenticate

        def counted(key: str) -> Any:
            lookups.append(key)
            return real(key)

        keys.authenticate = counted
        guesses = [httpx.get(f"{server.url}/alerts",
                             headers={"Authorization": f"Bearer oc_guess{i}_x"})
                   for i in range(5)]
        assert [r.status_code for r in guesses] == [401, 401, 401, 429, 429]
        limited = problem(guesses[3], 429)
        assert "too many failed authentications from 127.0.0.1" in limited["detail"]
        assert 1 <= int(guesses[3].headers["retry-after"]) <= 2
        assert len(lookups) == 3  # the limited guesses never reached the key store
        # The address is limited, whatever key it presents, until the budget refills.
        assert httpx.get(f"{server.url}/alerts", headers=good).status_code == 429
        assert len(lookups) == 3
        time.sleep(2.1)
        assert httpx.get(f"{server.url}/alerts", headers=good).status_code == 200
        # Requests without a key cost no lookup and are not counted.
        for _ in range(5):
            assert httpx.get(f"{server.url}/alerts").status_code == 401
        assert httpx.get(f"{server.url}/alerts", headers=good).status_code == 200
