"""deploy/ checked against the code: compose services, env, volumes, dashboards, Dockerfile.

No Docker engine runs here, so the compose file is checked statically; the Mosquitto part
runs for real in tests/deploy/test_deploy_mosquitto.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from config import settings as cfg
from ingest.contract import OCPP_MEASURANDS, SIGNALS
from ownercare.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICE_SETTINGS: dict[str, type[BaseSettings]] = {
    "bridge": cfg.BridgeSettings, "worker": cfg.WorkerSettings, "api": cfg.ApiSettings,
    "archive": cfg.ArchiveSettings,
}
INFRA = {"mosquitto", "kafka", "postgres", "influxdb", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yml").read_text())


def example_env() -> dict[str, str]:
    env = {}
    for line in (DEPLOY / "example.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def all_setting_names() -> set[str]:
    names: set[str] = set()
    for cls in (*SERVICE_SETTINGS.values(), cfg.RunSettings, cfg.ArchiveSettings):
        names |= {f"OWNERCARE_{n.upper()}" for n in cls.model_fields}
    return names


def ownercare_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if name not in INFRA}


def test_every_part_of_the_production_stack_is_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= INFRA
    commands = sorted(s["command"][0] for s in ownercare_services(compose).values())
    assert commands == ["api", "archive", "bridge", "bridge", "worker"]
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_commands_are_real_cli_commands(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name, service in ownercare_services(compose).items():
        assert service["image"] == "ownercare:latest", name
        args = parser.parse_args(service["command"])
        assert args.command == service["command"][0]


def test_example_env_lists_every_setting_and_only_real_ones() -> None:
    env = {k for k in example_env() if k.startswith("OWNERCARE_")}
    names = all_setting_names() - {"OWNERCARE_MQTT_PORT", "OWNERCARE_KAFKA_PORT"}  # run only
    assert env == names, (sorted(env - names), sorted(names - env))


@pytest.mark.parametrize("service", ["bridge-1", "bridge-2", "worker", "api", "archive"])
def test_each_service_settings_validate_with_the_example_env(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = compose["services"][service]
    assert spec["env_file"] == ".env"
    env = {**example_env(), **spec.get("environment", {})}
    for key in list(env):
        monkeypatch.setenv(key, str(env[key]))
    settings = SERVICE_SETTINGS[spec["command"][0]]()
    for field in settings.model_fields:  # every setting the service reads comes from the file
        assert f"OWNERCARE_{field.upper()}" in env
    if spec["command"][0] in ("worker", "api"):
        assert settings.effective_database_url.startswith("postgresql+psycopg://")
    if spec["command"][0] == "bridge":
        assert settings.mqtt_url.startswith("mqtt://")
        assert settings.mqtt_shared_group


def test_bridges_have_distinct_persistent_session_ids(compose: dict[str, Any]) -> None:
    ids = [compose["services"][b]["environment"]["OWNERCARE_MQTT_CLIENT_ID"]
           for b in ("bridge-1", "bridge-2")]
    assert len(set(ids)) == 2


def test_dependencies_wait_for_healthy_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dep, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dep)
            assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has none"


def test_mosquitto_mounts_match_its_config(compose: dict[str, Any]) -> None:
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["mosquitto"]["volumes"]}
    for path in re.findall(r"^(?:password_file|acl_file|certfile|keyfile|cafile) (\S+)$", conf,
                           flags=re.M):
        assert any(path.startswith(target) for target in mounts), path
    assert (DEPLOY / "mosquitto" / "acl").exists()
    for setting in ("max_queued_messages", "max_inflight_messages", "persistence true",
                    "allow_anonymous false"):
        assert re.search(rf"^{setting}", conf, flags=re.M), setting
    assert int(re.search(r"^max_queued_messages (\d+)", conf, flags=re.M).group(1)) > 1000


def flux_queries(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [q for k, v in node.items() for q in
                ([v] if k == "query" and isinstance(v, str) else flux_queries(v))]
    if isinstance(node, list):
        return [q for v in node for q in flux_queries(v)]
    return []


@pytest.mark.parametrize("name", ["fleet", "vehicle"])
def test_dashboards_query_what_the_archive_writes(name: str) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / f"{name}.json").read_text())
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "influxdb.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert all(p["datasource"]["uid"] == uid for p in dashboard["panels"])
    queries = flux_queries(dashboard)
    assert queries
    for query in queries:
        for measurement in re.findall(r'_measurement == "(\w+)"', query):
            assert measurement in {"vehicle", "charger", "alert", "vehicle_event"}
        for field in re.findall(r'_field == "([^"]+)"', query):
            known = (f"Vehicle.{field}" in SIGNALS or field in OCPP_MEASURANDS
                     or field in {"status", "errorCode", "title", "id"})
            assert known, f"{name}: field {field!r} is never written by the archive"


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pyproject = (DEPLOY.parent / "pyproject.toml").read_text()
    packages = re.search(r'include = \[([^\]]+)\]', pyproject).group(1)
    for package in re.findall(r'"(\w+)\*"', packages):
        assert f"COPY {package} {package}" in dockerfile, package
    assert "-c constraints.txt" in dockerfile
    assert "[postgres]" in dockerfile
    assert "embedded" not in dockerfile.split("RUN pip")[1].split("\n")[0]
