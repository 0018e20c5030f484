"""deploy/ checked against the code: compose services, env, volumes, Dockerfile (the
dashboards and Prometheus: test_dashboards.py).

No Docker engine runs here, so the compose file is checked statically; the Mosquitto part
runs for real in tests/deploy/test_deploy_mosquitto.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from config import settings as cfg
from ownercare.cli import build_parser, main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICE_SETTINGS: dict[str, type[BaseSettings]] = {
    "bridge": cfg.BridgeSettings, "worker": cfg.WorkerSettings, "api": cfg.ApiSettings,
    "archive": cfg.ArchiveSettings,
}
SECRETS_DIR = "/run/secrets/"  # where compose mounts a service's secrets
INFRA = {"mosquitto", "kafka", "postgres", "influxdb", "grafana", "prometheus"}


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
    commands = sorted(s["command"][0] for s in ownercare_services(compose).values()
                      if s["command"] != ["worker"])
    assert commands == ["api", "archive", "bridge", "bridge"]
    assert services["api"]["deploy"]["replicas"] == 2
    assert len(worker_services(compose)) >= 2


def worker_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in ownercare_services(compose).items()
            if s["command"] == ["worker"]}


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


@pytest.mark.parametrize("service", ["bridge-1", "bridge-2", "worker-1", "worker-2",
                                     "worker-3", "api", "archive"])
def test_each_service_settings_validate_with_the_example_env(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = compose["services"][service]
    assert spec["env_file"] == ".env"
    env = {**example_env(), **spec.get("environment", {})}
    for key in list(env):
        value = str(env[key])
        if value.startswith(SECRETS_DIR):  # mounted by compose: a real key stands in
            assert main(["ota", "keygen", "--out", str(tmp_path)]) == 0
            value = str(tmp_path / "ota-signing.pem")
        monkeypatch.setenv(key, value)
    settings = SERVICE_SETTINGS[spec["command"][0]]()
    for field in settings.model_fields:  # every setting the service reads comes from the file
        assert f"OWNERCARE_{field.upper()}" in env
    if spec["command"][0] in ("worker", "api"):
        assert settings.effective_database_url.startswith("postgresql+psycopg://")
    if spec["command"][0] == "bridge":
        assert settings.mqtt_url.startswith("mqtt://")
        assert settings.shard[1] > 1
        assert not settings.mqtt_shared_group
    if spec["command"][0] == "worker":
        assert settings.ota_signing_key, "OTA is off in the production shape"


def test_the_workers_sign_ota_commands_with_the_key_keygen_writes(
        compose: dict[str, Any], tmp_path: Path) -> None:
    secrets = compose["secrets"]
    for name, spec in worker_services(compose).items():
        (secret,) = spec["secrets"]
        assert spec["environment"]["OWNERCARE_OTA_SIGNING_KEY"] == f"{SECRETS_DIR}{secret}", name
        assert secret in secrets
    for name, spec in ownercare_services(compose).items():  # never on the API or bridge hosts
        assert "OWNERCARE_OTA_SIGNING_KEY" not in spec.get("environment", {}) \
            or name in worker_services(compose), name
        assert not spec.get("secrets") or name in worker_services(compose), name
    (source,) = {secrets[s["secrets"][0]]["file"] for s in worker_services(compose).values()}
    # The file is the private key `ownercare ota keygen --out deploy/secrets` writes, which
    # the compose header and deploy/README.md tell the operator to run.
    assert main(["ota", "keygen", "--out", str(tmp_path)]) == 0
    assert source.startswith("./secrets/"), source
    assert b"PRIVATE KEY" in (tmp_path / Path(source).name).read_bytes()
    for doc in (DEPLOY / "compose.yml", DEPLOY / "README.md"):
        assert "ownercare ota keygen --out deploy/secrets" in doc.read_text(), doc
    assert "deploy/secrets/" in (DEPLOY.parent / ".gitignore").read_text().splitlines()


def test_each_worker_replica_has_a_state_volume_of_its_own(compose: dict[str, Any]) -> None:
    state_dir = example_env()["OWNERCARE_STATE_DIR"]
    sources = []
    for name, spec in worker_services(compose).items():
        assert spec.get("deploy", {}).get("replicas", 1) == 1, f"{name}: replicas share volumes"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in spec["volumes"]}
        assert state_dir in mounts, name  # Faust's local data is under OWNERCARE_STATE_DIR
        assert mounts[state_dir] in compose["volumes"], name
        sources.append(mounts[state_dir])
    assert len(set(sources)) == len(sources) >= 2, sources


def test_bridges_have_distinct_persistent_session_ids(compose: dict[str, Any]) -> None:
    ids = [compose["services"][b]["environment"]["OWNERCARE_MQTT_CLIENT_ID"]
           for b in ("bridge-1", "bridge-2")]
    assert len(set(ids)) == 2


def test_the_bridges_shards_cover_the_fleet_once(compose: dict[str, Any]) -> None:
    bridges = [spec for spec in ownercare_services(compose).values()
               if spec["command"] == ["bridge"]]
    shards = sorted(cfg.parse_shard(b["environment"]["OWNERCARE_BRIDGE_SHARD"])
                    for b in bridges)
    assert shards == [(k, len(bridges)) for k in range(1, len(bridges) + 1)]


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


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pyproject = (DEPLOY.parent / "pyproject.toml").read_text()
    packages = re.search(r'include = \[([^\]]+)\]', pyproject).group(1)
    for package in re.findall(r'"(\w+)\*"', packages):
        assert f"COPY {package} {package}" in dockerfile, package
    assert "-c constraints.txt" in dockerfile
    assert "[postgres]" in dockerfile
    assert "embedded" not in dockerfile.split("RUN pip")[1].split("\n")[0]
